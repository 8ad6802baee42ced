//! Starting the VMs the system manifest lists, one VMM process each, and checking how
//! each ends (their reports become test lines).

use crate::alloc::Alloc;
use crate::console::{Console, FIRST_VMM_BADGE};
use crate::process::{self, Images};
use protocols::bootinfo::{self, ModuleDesc, BOOTINFO_ADDR};
use protocols::device_model;
use protocols::error::Error;
use protocols::fault::FaultMessage;
use protocols::io::root_range_covering;
use protocols::manifest::{DeviceProcess, Expect, GuestMode, Manifest, VmEntry};
use protocols::object::{vcpu_mode, Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::vmm::{self, slot, stop, HostDate, VmDescription, REPORT_LABEL};
use rt::ipc::{invoke, recv, reply};
use rt::testing::{expect_eq, Suite};

/// What the kernel says this CPU can run (`bootinfo::vmx` bits).
fn vmx_features() -> u64 {
    // SAFETY: the kernel maps the boot-information page read-only at BOOTINFO_ADDR.
    unsafe { (BOOTINFO_ADDR as *const u64).add(bootinfo::word::VMX_FEATURES).read() }
}

fn mode(m: GuestMode) -> u64 {
    match m {
        GuestMode::Long64 => vcpu_mode::LONG64,
        GuestMode::Protected32 => vcpu_mode::PROTECTED32,
        GuestMode::Real => vcpu_mode::REAL,
    }
}

/// Whether a guest in `mode` can run with `features`: every guest needs EPT; real mode
/// and unpaged protected mode need unrestricted guest.
fn runnable(m: GuestMode, features: u64) -> bool {
    let mut need = bootinfo::vmx::VCPUS | bootinfo::vmx::EPT;
    if m != GuestMode::Long64 {
        need |= bootinfo::vmx::UNRESTRICTED_GUEST;
    }
    features & need == need
}

/// Why a guest in mode `m` cannot run with `features`, if it cannot.
fn unrunnable(m: GuestMode, features: u64) -> Option<&'static str> {
    if features & bootinfo::vmx::VCPUS == 0 {
        Some("no VM can run: this CPU has no usable VT-x")
    } else if features & bootinfo::vmx::EPT == 0 {
        Some("no VM can run: this CPU lacks EPT")
    } else if !runnable(m, features) {
        Some("this guest needs unrestricted guest, which this CPU lacks")
    } else {
        None
    }
}

/// The report a VM must send: `(stop reason, exit code)`.
fn expected(vm: &VmEntry<'_>, features: u64) -> (u64, u64) {
    if !runnable(vm.mode, features) {
        return (stop::NOT_SUPPORTED, 0);
    }
    match vm.expect {
        Expect::Exit(code) => (stop::EXITED, code),
        Expect::TripleFault => (stop::TRIPLE_FAULT, 0),
        Expect::PowerOff => (stop::POWER_OFF, 0),
        Expect::Refused => (stop::REFUSED, 0),
        Expect::VmmCrashed => (stop::VMM_CRASHED, 0),
    }
}

/// The badge bit of a VMM's fault and exit messages on the report endpoint (its low bits
/// say which VM, as a report's badge does).
const FAULT_BADGE: u64 = 1 << 32;

/// What a VMM's fault endpoint said, for `vm NAME: vmm crashed: ...`.
struct Crash(Option<FaultMessage>);

impl core::fmt::Display for Crash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            // rt's panic handler exits with all ones after printing the panic.
            Some(FaultMessage::Exit { code: u64::MAX }) => f.write_str("panicked"),
            Some(FaultMessage::Exit { code }) => {
                write!(f, "exited with code {code} before reporting")
            }
            Some(FaultMessage::Fault { vector, error, rip, address }) => write!(
                f,
                "exception {vector} at rip {rip:#x} (error code {error:#x}, address {address:#x})"
            ),
            None => f.write_str("an unknown message on its fault endpoint"),
        }
    }
}

/// Run the VMs of the manifest, phase by phase (VMs of one phase run side by side; a
/// later phase starts when the earlier one has ended, so benchmarks can run alone).
pub fn run(
    t: &mut Suite,
    a: &mut Alloc,
    manifest: &Manifest<'static>,
    console: Option<&Console>,
    images: &mut Images,
) -> Result<(), Error> {
    let features = vmx_features();
    // A VCpu can be made exactly when the kernel says so.
    let probe = a.slot();
    let made = match rt::ipc::retype(a.untyped, ObjectType::VCpu, 0, probe, 1) {
        Ok(_) => {
            invoke(bootinfo::slot::CNODE, Invocation::CNodeDelete, &[probe])?;
            true
        }
        Err(Error::NotSupported) => false,
        Err(e) => return Err(e),
    };
    t.check("vcpu_creation_matches_vmx", expect_eq(made, features & bootinfo::vmx::VCPUS != 0));
    rt::println!(
        "init: VT-x features {features:#x}; the manifest lists {} VMs",
        manifest.vms.len()
    );
    let report = a.make(ObjectType::Endpoint, 0)?;
    let mut vmms = [None; protocols::manifest::MAX_VMS];
    let last_phase = manifest.vms.iter().map(|v| v.phase).max().unwrap_or(0);
    for phase in 0..=last_phase {
        let mut started = 0u64;
        // The host's date once for the VMs made together (each read carves a port range).
        let date = crate::host_rtc::read(a).unwrap_or_default();
        for (i, vm) in manifest.vms.iter().enumerate().filter(|(_, v)| v.phase == phase) {
            match start_vmm(a, images, vm, (report, console), (i as u64 + 1, date)) {
                Ok(v) => {
                    started |= 1 << i;
                    if let Some(slot) = vmms.get_mut(i) {
                        *slot = Some(v);
                    }
                }
                // What init could not make was refused, as this VM expects.
                Err(_) if vm.expect == Expect::Refused => t.check(vm.name, Ok::<(), &str>(())),
                Err(e) => t.check(vm.name, Err(e.name())),
            }
        }
        let mut supervisor = Supervisor { a: &mut *a, images: &mut *images, vmms: &mut vmms };
        collect(t, manifest, (report, started), features, &mut supervisor)?;
    }
    Ok(())
}

fn module(name: &str) -> Result<ModuleDesc, Error> {
    process::module(name).ok_or(Error::InvalidArgument)
}

/// A VMM the root task started, as it keeps it to start a fresh one if it crashes.
#[derive(Clone, Copy)]
struct Vmm {
    process: process::Process,
    /// Its fault endpoint's slot (in the root task's CSpace).
    fault: u64,
    /// Its start argument.
    arg: u64,
    /// How many times it was restarted.
    restarts: u8,
}

/// How many times a VMM is restarted before its VM is given up: a VMM that crashes as
/// soon as it starts would otherwise take the root task's memory, a process at a time.
const MAX_RESTARTS: u8 = 3;

/// Why a crashed VMM was not restarted.
enum NotRestarted {
    /// It was restarted [`MAX_RESTARTS`] times already.
    TooOften,
    /// Making or starting the new one failed.
    Failed(Error),
}

impl core::fmt::Display for NotRestarted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooOften => write!(f, "it crashed again after {MAX_RESTARTS} restarts"),
            Self::Failed(e) => write!(f, "starting a new one failed: {}", e.name()),
        }
    }
}

impl From<Error> for NotRestarted {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// What the root task needs to restart a crashed VMM.
struct Supervisor<'a> {
    a: &'a mut Alloc,
    images: &'a mut Images,
    vmms: &'a mut [Option<Vmm>],
}

impl Supervisor<'_> {
    /// Start a fresh VMM for `vm` (the `index`th), whose VMM crashed, on the crashed
    /// one's CNode: it holds every object the VM is made of (the VCpu, guest space and
    /// RAM, exit endpoint, the saved state), and the new VMM takes them up
    /// (`vmm::flags::RESTARTED`). The crashed thread goes, and with it the reply the
    /// vCPU waited for: the guest runs the exiting instruction again and its exit reaches
    /// the new VMM. The crashed address space goes too (once the new VMM has deleted the
    /// crashed one's other thread, if any).
    fn restart(&mut self, index: usize, vm: &VmEntry<'static>) -> Result<(), NotRestarted> {
        let slot = self.vmms.get_mut(index).ok_or(Error::InvalidArgument)?;
        let v = slot.as_mut().ok_or(Error::InvalidArgument)?;
        if v.restarts >= MAX_RESTARTS {
            return Err(NotRestarted::TooOften);
        }
        let old = v.process;
        invoke(bootinfo::slot::CNODE, Invocation::CNodeDelete, &[old.tcb])?;
        invoke(old.cnode, Invocation::CNodeDelete, &[protocols::manifest::slot::VSPACE])?;
        invoke(bootinfo::slot::CNODE, Invocation::CNodeDelete, &[old.vspace])?;
        let (size, bits, mode, flags) = vmm::split_start_arg(v.arg);
        let crash = vmm::flags::CRASH | vmm::flags::CRASH_ON_HYPERCALL;
        let arg = vmm::start_arg(size, bits, mode, (flags & !crash) | vmm::flags::RESTARTED);
        let module = module(vm.vmm)?;
        let run = (u64::from(vm.priority), v.fault, arg);
        let p = process::spawn_in(self.a, self.images, &module, old.cnode, run)?;
        *v = Vmm { process: p, restarts: v.restarts + 1, ..*v };
        invoke(p.tcb, Invocation::TcbSetAffinity, &[cpu_of(vm)])?;
        Ok(process::start(&p)?)
    }
}

/// Start the VMM process of `vm`, reporting on `report` with `badge` and printing
/// through `console` (with the badge after the root task's); `date` is the host's, for
/// its description.
fn start_vmm(
    a: &mut Alloc,
    images: &mut Images,
    vm: &VmEntry<'static>,
    (report, console): (u64, Option<&Console>),
    (badge, date): (u64, HostDate),
) -> Result<Vmm, Error> {
    let guest = module(vm.guest)?;
    let initrd = vm.linux.and_then(|l| l.initrd).map(module).transpose()?;
    if guest.pages() + initrd.map_or(0, |m| m.pages()) > vmm::MAX_IMAGE_PAGES {
        rt::println!(
            "init: {}: the guest's modules are larger than a VMM takes ({} MiB)",
            vm.name,
            vmm::MAX_IMAGE_PAGES / 256
        );
        return Err(Error::InvalidArgument);
    }
    let vmm_module = module(vm.vmm)?;
    let flags = [
        (vm.hostile, vmm::flags::HOSTILE),
        (vm.mutate, vmm::flags::MUTATE),
        (vm.trace, vmm::flags::TRACE),
        (vm.linux.is_some(), vmm::flags::LINUX),
        (vm.crash, vmm::flags::CRASH),
        (vm.crash_on_hypercall, vmm::flags::CRASH_ON_HYPERCALL),
        (vm.restart, vmm::flags::RESTARTABLE),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, flag)| acc | flag);
    let arg = vmm::start_arg(guest.size, vm.memory_bits, mode(vm.mode), flags);
    let radix = u64::from(vmm::CNODE_RADIX);
    // Its faults and exit come to the report endpoint too: a VMM that dies before
    // reporting is reported by the VM's name, and the other VMs run on.
    let fault = a.slot();
    let all = u64::from(Rights::ALL.bits());
    let fault_badge = FAULT_BADGE | badge;
    invoke(bootinfo::slot::CNODE, Invocation::CNodeMint, &[report, fault, all, fault_badge])?;
    let p = process::spawn(a, images, &vmm_module, radix, u64::from(vm.priority), fault, arg)?;
    let ut = a.make(ObjectType::Untyped, u64::from(vmm::OBJECT_BITS))?;
    invoke(p.cnode, Invocation::CNodeMove, &[ut, slot::UNTYPED])?;
    let ram = a.make_large(ObjectType::Untyped, u64::from(vm.memory_bits)).inspect_err(|_| {
        rt::println!(
            "init: {}: no free block of {} MiB for its RAM (memory_mib): the machine has too little memory",
            vm.name,
            1u64 << vm.memory_bits.saturating_sub(20)
        );
    })?;
    invoke(p.cnode, Invocation::CNodeMove, &[ram, slot::RAM_UNTYPED])?;
    invoke(p.cnode, Invocation::CNodeMint, &[report, slot::REPORT, all, badge])?;
    if let Some(c) = console {
        c.grant_vmm(p.cnode, FIRST_VMM_BADGE + badge, vm.console_input)?;
    }
    if let Some((first, last)) = vm.pass_ports {
        // The manifest was checked: one of the root task's ranges covers them.
        let range = root_range_covering(first, last).ok_or(Error::InvalidArgument)?;
        let ports = a.slot();
        let root = bootinfo::slot::FIRST_IO_PORTS + range as u64;
        invoke(root, Invocation::IoPortsCarve, &[first.into(), last.into(), ports])?;
        invoke(p.cnode, Invocation::CNodeMove, &[ports, slot::PASS_PORTS])?;
    }
    if let Some(d) = vm.device_process {
        start_device(a, images, vm, d, (p.cnode, fault), (console, badge))?;
    }
    let read = u64::from(Rights::READ.bits());
    let mut next = slot::FIRST_IMAGE_FRAME;
    for m in core::iter::once(&guest).chain(initrd.as_ref()) {
        for i in 0..m.pages() {
            invoke(p.cnode, Invocation::CNodeCopy, &[m.first_slot + i, next, read])?;
            next += 1;
        }
    }
    let cmdline = vm.linux.as_ref().map_or("", |linux| linux.cmdline);
    // The manifest was checked: its device list keeps the rules.
    let devices = vm.device_set().map_err(|_| Error::InvalidArgument)?;
    // Its vCPUs are made on the CPU the VMM runs on (the VMM moves the others on).
    let cpu = cpu_of(vm);
    if cpu != 0 {
        rt::println!("init: {}: runs on CPU {cpu}", vm.name);
    }
    let d = VmDescription::new(vm.name, cmdline, initrd.map_or(0, |m| m.size), date)
        .with_devices(&devices)
        .with_vcpus(vm.vcpus, cpu, crate::cross_cpu::cpus());
    let description = describe(a, &d)?;
    invoke(p.cnode, Invocation::CNodeMove, &[description, slot::DESCRIPTION])?;
    invoke(p.tcb, Invocation::TcbSetAffinity, &[cpu])?;
    process::start(&p)?;
    Ok(Vmm { process: p, fault, arg, restarts: 0 })
}

/// The CPU `vm` runs on: its manifest's, or CPU 0 where that one is not online.
fn cpu_of(vm: &VmEntry<'_>) -> u64 {
    let cpu = u64::from(vm.cpu);
    let online = crate::cross_cpu::cpus();
    if cpu >= online {
        rt::println!("init: {}: CPU {cpu} is not online ({online} are): it runs on CPU 0", vm.name);
        return 0;
    }
    cpu
}

/// Start the process of `vm`'s device out of process, `d`, beside its VMM (whose CNode
/// is `vmm`): an endpoint it serves and the VMM calls, a notification it signals and the
/// VMM waits on, a page both map, and a console endpoint of its own (`protocols::
/// device_model`). Its faults go to `fault`, the VMM's: a device that dies is reported by
/// the VM's name. Out of line: `start_vmm`'s frame is deep enough.
#[inline(never)]
fn start_device(
    a: &mut Alloc,
    images: &mut Images,
    vm: &VmEntry<'static>,
    d: DeviceProcess<'static>,
    (vmm, fault): (u64, u64),
    (console, badge): (Option<&Console>, u64),
) -> Result<(), Error> {
    let program = module(d.module)?;
    // The manifest was checked: the VM has the device.
    let devices = vm.device_set().map_err(|_| Error::InvalidArgument)?;
    let (first, irq) = devices.uart().ok_or(Error::InvalidArgument)?;
    let last = first + (protocols::devices::UART_PORTS - 1);
    let arg = device_model::start_arg(d.kind, Some(irq), Some((first, last)));
    let radix = u64::from(device_model::CNODE_RADIX);
    let p = process::spawn(a, images, &program, radix, u64::from(vm.priority), fault, arg)?;
    let endpoint = a.make(ObjectType::Endpoint, 0)?;
    let line = a.make(ObjectType::Notification, 0)?;
    let page = a.make(ObjectType::Frame, 0)?;
    let bits = |r: Rights| u64::from(r.bits());
    let shared = bits(Rights::READ.union(Rights::WRITE));
    for (cnode, src, dst, rights) in [
        (p.cnode, endpoint, device_model::slot::ENDPOINT, bits(Rights::READ)),
        (p.cnode, line, device_model::slot::LINE, bits(Rights::WRITE)),
        (p.cnode, page, device_model::slot::PAGE, shared),
        (vmm, endpoint, slot::DEVICE_ENDPOINT, bits(Rights::CALL)),
        (vmm, line, slot::DEVICE_LINE, bits(Rights::READ)),
        (vmm, page, slot::DEVICE_PAGE, shared),
    ] {
        invoke(cnode, Invocation::CNodeCopy, &[src, dst, rights])?;
    }
    if let Some(c) = console {
        c.grant(p.cnode, device_model::slot::CONSOLE, FIRST_DEVICE_BADGE + badge)?;
    }
    invoke(p.tcb, Invocation::TcbSetAffinity, &[cpu_of(vm)])?;
    process::start(&p)
}

/// A VM's device process's badge as a console client is this plus the VM's number.
const FIRST_DEVICE_BADGE: u64 = 0x200;

/// A frame holding a VM's description `d`, unmapped again: returns its slot.
fn describe(a: &mut Alloc, d: &VmDescription) -> Result<u64, Error> {
    let (frame, va) = a.page()?;
    // SAFETY: `page` mapped the fresh frame writable at `va`; the description fits in it.
    unsafe { (va as *mut VmDescription).write(*d) };
    invoke(frame, Invocation::FrameUnmap, &[])?;
    Ok(frame)
}

/// Wait on `report` for the reports of every VM in `started` and check each; restart
/// the crashed VMM of a VM that asks for it.
fn collect(
    t: &mut Suite,
    manifest: &Manifest<'static>,
    (report, mut started): (u64, u64),
    features: u64,
    supervisor: &mut Supervisor<'_>,
) -> Result<(), Error> {
    while started != 0 {
        let r = recv(report)?;
        let index = (r.badge & !FAULT_BADGE).wrapping_sub(1);
        let Some(vm) = manifest.vms.get(index as usize) else { continue };
        if r.badge & FAULT_BADGE != 0 {
            // A VMM's exit after its report is how it ends; before it, a crash. A faulted
            // VMM gets no reply: it stays stopped, and so does its vCPU.
            if started & (1 << index) == 0 {
                continue;
            }
            let why = Crash(FaultMessage::decode(r.msg.info.label, r.msg.words));
            rt::println!("init: vm {}: vmm crashed: {why}", vm.name);
            if vm.restart {
                match supervisor.restart(index as usize, vm) {
                    Ok(()) => {
                        rt::println!("init: vm {}: vmm restarted", vm.name);
                        continue;
                    }
                    Err(why) => rt::println!("init: vm {}: vmm not restarted: {why}", vm.name),
                }
            }
            started &= !(1 << index);
            let got = (stop::VMM_CRASHED, 0);
            t.check(vm.name, expect_eq(got, expected(vm, features)));
            continue;
        }
        started &= !(1 << index);
        let got = if r.msg.info.label == REPORT_LABEL {
            (r.msg.words[2], r.msg.words[0])
        } else {
            (u64::MAX, r.msg.info.label)
        };
        let want = expected(vm, features);
        match unrunnable(vm.mode, features) {
            // The VM could not run here and its VMM said so: nothing was tested.
            Some(why) if got == want => t.skip(vm.name, why),
            _ => t.check(vm.name, expect_eq(got, want)),
        }
        reply(&rt::ipc::Msg::default())?;
    }
    Ok(())
}
