//! The system manifest: what the root task builds. People write it as TOML under
//! `images/`; the build tool checks it and encodes it with postcard into the boot module
//! `manifest`, which the root task decodes (and checks again: a boot module is input).
//!
//! It lists the ordinary processes (`process`: a boot module, a priority, a CNode size
//! and exactly the capabilities the process gets, slot by slot), the endpoints and
//! notifications they share by name, and the VMs. A VMM's capabilities are not listed:
//! they follow the VM protocol (`crate::vmm`), from the VM entry.
//!
//! The wire format is postcard over these types; enums only ever get variants appended,
//! and structures only fields at their end.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::devices::{DeviceError, DeviceSet, Kind};

mod linux;
mod process;

pub use linux::{LinuxBoot, LinuxError, MAX_CMDLINE};
pub use process::{
    slot, Cap, CapEntry, CapError, Object, ObjectKind, ProcessEntry, ProcessError, Start, MAX_CAPS,
    MAX_OBJECTS, MAX_PROCESSES, MAX_RADIX, MAX_UNTYPED_BITS, MIN_RADIX, MIN_UNTYPED_BITS,
    OBJECT_RIGHTS, RIGHT_NAMES,
};

/// The most VMs a manifest lists.
pub const MAX_VMS: usize = 16;
/// Longest name or module name.
pub const MAX_NAME: usize = 32;
/// The boot module that carries the manifest.
pub const MODULE: &str = "manifest";
/// Largest encoded manifest.
pub const MAX_ENCODED: usize = 4096;
/// The named endpoint the root task prints through, once a process holding it with the
/// read right (its server, the console driver) runs; each VMM gets a badged copy.
pub const CONSOLE_ENDPOINT: &str = "console";
/// The named notification the console driver signals when host input arrives; the VM
/// that owns the console input (`VmEntry::console_input`) gets a copy to wait on.
pub const CONSOLE_INPUT_NOTIFICATION: &str = "console_input";
/// The root task's priority: nothing it starts can run above it.
pub use crate::bootinfo::ROOT_PRIORITY;

/// A guest's processor mode at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestMode {
    /// 64-bit long mode.
    Long64,
    /// 32-bit protected mode, paging off.
    Protected32,
    /// Real mode.
    Real,
}

/// How a VM must end for the run to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The guest exits by hypercall with this code.
    Exit(u64),
    /// The guest triple-faults (only its VM stops).
    TripleFault,
    /// The guest powers off: without ACPI a guest ends by halting with interrupts
    /// disabled, which nothing can wake (Linux's `poweroff -f`).
    PowerOff,
    /// The VM never runs: its VMM refuses what it was given (a malformed kernel, an
    /// initramfs that does not fit), or the root task cannot make it (too much RAM). The
    /// refusal is printed; other VMs run on.
    Refused,
    /// The VMM crashes (faults, or exits without reporting): the root task reports it
    /// by the VM's name, the VM stays stopped, and the other VMs run on.
    VmmCrashed,
}

/// One VM: a VMM process serving one guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmEntry<'a> {
    /// Its name (the test line's name).
    pub name: &'a str,
    /// The VMM's boot module.
    pub vmm: &'a str,
    /// The guest image's boot module.
    pub guest: &'a str,
    /// The guest's mode.
    pub mode: GuestMode,
    /// log2 of the VM's RAM in bytes (2 MiB..=1 GiB), which the VMM gets as untyped
    /// memory of exactly that size (its objects come from a fixed untyped of their own).
    pub memory_bits: u8,
    /// The VMM's scheduling priority (its vCPU runs at the same).
    pub priority: u8,
    /// The CPU the VMM, its vCPU and its device process run on; a CPU that is not online
    /// means CPU 0 (the root task says so).
    pub cpu: u8,
    /// Start only after every VM of a lower phase has ended (benchmarks run alone).
    pub phase: u8,
    /// Hostile VMM (see `vmm::flags::HOSTILE`).
    pub hostile: bool,
    /// Mutating VMM (see `vmm::flags::MUTATE`).
    pub mutate: bool,
    /// Print an exit trace (see `vmm::flags::TRACE`).
    pub trace: bool,
    /// Crashing VMM (see `vmm::flags::CRASH`).
    pub crash: bool,
    /// Crashing VMM at the guest's request (see `vmm::flags::CRASH_ON_HYPERCALL`; only
    /// with `restart`).
    pub crash_on_hypercall: bool,
    /// Restart the VMM when it crashes (see `vmm::flags::RESTARTABLE`): the root task
    /// starts a fresh one on the same CNode and the guest runs on.
    pub restart: bool,
    /// How it must end.
    pub expect: Expect,
    /// Host ports `first..=last` the guest reaches without exiting (an `IoPorts`
    /// capability the VMM passes to its VCpu); never the kernel's ports.
    pub pass_ports: Option<(u16, u16)>,
    /// A Linux guest: `guest` is a bzImage booted with this initramfs and command line
    /// (`mode` is then [`GuestMode::Long64`], the kernel's 64-bit entry). `None` for the
    /// project's own test guests, which are ELF images.
    #[serde(borrow)]
    pub linux: Option<LinuxBoot<'a>>,
    /// This VM owns the console input: what the host types at the console driver's UART
    /// reaches the guest's COM1. At most one VM; the manifest then declares the
    /// notification [`CONSOLE_INPUT_NOTIFICATION`].
    pub console_input: bool,
    /// The VM's devices (`crate::devices`; the build tool checked the list as written
    /// and carries the set it stands for); `None`: the standard PC
    /// ([`DeviceSet::STANDARD`]).
    pub devices: Option<DeviceSet>,
    /// A device of the VM that runs as a process of its own (`crate::device_model`),
    /// which the root task starts beside the VMM; `None`: every device runs in the VMM.
    #[serde(borrow)]
    pub device_process: Option<DeviceProcess<'a>>,
    /// Its vCPUs (1..=[`crate::vmm::MAX_VCPUS`]): the guest's processors, each a VCpu of
    /// its own that the VMM places on the CPUs after the VM's own where they are online.
    pub vcpus: u8,
}

/// A VM's device that runs out of process: its kind, and the boot module of the device
/// model that runs it (a program the build tool knows as a device model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProcess<'a> {
    /// The device.
    pub kind: Kind,
    /// The device model's boot module.
    pub module: &'a str,
}

impl DeviceProcess<'_> {
    /// The kinds a device model exists for: the 16550 (its model is a crate of its own,
    /// `uart16550`, which the `uart-model` process runs).
    pub const KINDS: [Kind; 1] = [Kind::Uart16550];
}

impl VmEntry<'_> {
    /// The VM's devices, checked again.
    pub fn device_set(&self) -> Result<DeviceSet, DeviceError> {
        self.devices.as_ref().map_or(Ok(DeviceSet::STANDARD), DeviceSet::recheck)
    }

    /// Why its vCPU count cannot be served, if it cannot: out of range, or several vCPUs
    /// where the VMM serves the VM a way that has one (the test modes, which act on one
    /// vCPU's exits; a restartable VMM, whose saved state holds one vCPU's).
    pub fn vcpus_refused(&self) -> Option<&'static str> {
        if !(1..=crate::vmm::MAX_VCPUS).contains(&self.vcpus) {
            return Some("a VM has 1 to 8 vCPUs");
        }
        let single = [
            (self.hostile, "a hostile VMM attacks one vCPU"),
            (self.mutate, "a mutating VMM mutates one vCPU's replies"),
            (self.trace, "a traced VM records one vCPU's exits"),
            (self.crash || self.restart, "a restartable or crashing VMM saves one vCPU's state"),
        ];
        let why = single.iter().find(|(on, _)| *on).map(|(_, why)| *why)?;
        (self.vcpus > 1).then_some(why)
    }
}

/// The whole manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest<'a> {
    /// The VMs, in start order.
    #[serde(borrow)]
    pub vms: Vec<VmEntry<'a>, MAX_VMS>,
    /// The endpoints and notifications the root task makes first and keeps; processes
    /// get copies by name.
    #[serde(borrow)]
    pub objects: Vec<Object<'a>, MAX_OBJECTS>,
    /// The processes, created in this order.
    #[serde(borrow)]
    pub processes: Vec<ProcessEntry<'a>, MAX_PROCESSES>,
}

/// Why a manifest was refused; every variant names the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<'a> {
    /// The bytes do not decode.
    Malformed,
    /// An entry's name is empty or too long.
    BadName { index: usize },
    /// Two entries share a name.
    DuplicateName { name: &'a str },
    /// The VM memory is outside 2^22..=2^28 bytes.
    BadMemory { name: &'a str, bits: u8 },
    /// A priority above what the root task may hand out (254).
    BadPriority { name: &'a str, priority: u8 },
    /// A module name is empty or too long.
    BadModule { name: &'a str },
    /// `pass_ports` is reversed or reaches a port the kernel keeps (the PICs, the PIT).
    BadPorts { name: &'a str, first: u16, last: u16 },
    /// A named object's name is empty or too long.
    BadObjectName { index: usize },
    /// Two named objects share a name.
    DuplicateObject { name: &'a str },
    /// A process's name is empty or too long.
    BadProcessName { index: usize },
    /// Two processes share a name.
    DuplicateProcess { name: &'a str },
    /// A process entry is wrong.
    Process { name: &'a str, why: ProcessError<'a> },
    /// A Linux VM's boot entry is wrong.
    Linux { name: &'a str, why: LinuxError },
    /// Two VMs claim the console input.
    ConsoleInputTwice { first: &'a str, second: &'a str },
    /// A VM claims the console input, but no notification [`CONSOLE_INPUT_NOTIFICATION`]
    /// is declared for the driver to signal.
    ConsoleInputUnsignalled { name: &'a str },
    /// A VM's device list breaks a rule of `crate::devices`.
    Device { name: &'a str, why: DeviceError },
    /// A device's ports overlap the VM's `pass_ports`, which never exit to the VMM.
    DevicePassPorts { name: &'a str, kind: Kind, first: u16, last: u16 },
    /// A device out of process that is not in the VM's devices, or of a kind no device
    /// model exists for, or whose module name is empty or too long.
    DeviceProcess { name: &'a str, kind: Kind, why: &'static str },
    /// `vcpus` is outside 1..=[`crate::vmm::MAX_VCPUS`], or asks for several vCPUs where
    /// the VM is served in a way that has one (said in `why`).
    BadVcpus { name: &'a str, vcpus: u8, why: &'static str },
}

impl core::fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed => write!(f, "the manifest does not decode"),
            Self::BadName { index } => {
                write!(f, "vm #{index}: name empty or over {MAX_NAME} bytes")
            }
            Self::DuplicateName { name } => write!(f, "vm {name:?}: name used twice"),
            Self::BadMemory { name, bits } => {
                write!(f, "vm {name:?}: RAM of 2^{bits} bytes is outside 2 MiB..=1 GiB")
            }
            Self::BadPriority { name, priority } => {
                write!(f, "vm {name:?}: priority {priority} is above 254")
            }
            Self::BadModule { name } => write!(f, "vm {name:?}: module name empty or too long"),
            Self::BadPorts { name, first, last } => write!(
                f,
                "vm {name:?}: pass_ports {first:#x}..={last:#x} is reversed or reaches a port \
                 the kernel keeps (the PICs, the PIT)"
            ),
            Self::BadObjectName { index } => {
                write!(f, "named object #{index}: name empty or over {MAX_NAME} bytes")
            }
            Self::DuplicateObject { name } => write!(f, "named object {name:?}: name used twice"),
            Self::BadProcessName { index } => {
                write!(f, "process #{index}: name empty or over {MAX_NAME} bytes")
            }
            Self::DuplicateProcess { name } => write!(f, "process {name:?}: name used twice"),
            Self::Process { name, why } => write!(f, "process {name:?}: {why}"),
            Self::Linux { name, why } => write!(f, "vm {name:?}: {why}"),
            Self::ConsoleInputTwice { first, second } => write!(
                f,
                "vm {second:?}: console_input is already taken by vm {first:?} (at most one \
                 VM owns the console input)"
            ),
            Self::ConsoleInputUnsignalled { name } => write!(
                f,
                "vm {name:?}: console_input needs a notification named \
                 {CONSOLE_INPUT_NOTIFICATION:?} (notifications = [\"{CONSOLE_INPUT_NOTIFICATION}\"]) \
                 for the console driver to signal"
            ),
            Self::Device { name, why } => write!(f, "vm {name:?}: {why}"),
            Self::DevicePassPorts { name, kind, first, last } => write!(
                f,
                "vm {name:?}: device {}: its ports overlap pass_ports {first:#x}..={last:#x}, \
                 which the guest reaches without the VMM",
                kind.name()
            ),
            Self::DeviceProcess { name, kind, why } => {
                write!(f, "vm {name:?}: device {}: cannot run out of process: {why}", kind.name())
            }
            Self::BadVcpus { name, vcpus, why } => write!(f, "vm {name:?}: vcpus = {vcpus}: {why}"),
        }
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME
}

impl<'a> Manifest<'a> {
    /// Decode and check an encoded manifest.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error<'a>> {
        let m: Self = postcard::from_bytes(bytes).map_err(|_| Error::Malformed)?;
        m.check()?;
        Ok(m)
    }

    /// Check every entry (the build tool checks the same before encoding).
    pub fn check(&self) -> Result<(), Error<'a>> {
        self.check_vms()?;
        for (index, o) in self.objects.iter().enumerate() {
            if !name_ok(o.name) {
                return Err(Error::BadObjectName { index });
            }
            if self.objects.iter().take(index).any(|other| other.name == o.name) {
                return Err(Error::DuplicateObject { name: o.name });
            }
        }
        for (index, p) in self.processes.iter().enumerate() {
            if !name_ok(p.name) {
                return Err(Error::BadProcessName { index });
            }
            let earlier = self.processes.get(..index).unwrap_or_default();
            if earlier.iter().any(|other| other.name == p.name) {
                return Err(Error::DuplicateProcess { name: p.name });
            }
            process::check(p, &self.objects, earlier)
                .map_err(|why| Error::Process { name: p.name, why })?;
        }
        Ok(())
    }

    /// The named object called `name`: its index (the order the root task makes them in)
    /// and what it is.
    pub fn object(&self, name: &str) -> Option<(usize, ObjectKind)> {
        self.objects.iter().enumerate().find(|(_, o)| o.name == name).map(|(i, o)| (i, o.kind))
    }

    fn check_vms(&self) -> Result<(), Error<'a>> {
        for (index, vm) in self.vms.iter().enumerate() {
            if !name_ok(vm.name) {
                return Err(Error::BadName { index });
            }
            if self.vms.iter().take(index).any(|other| other.name == vm.name) {
                return Err(Error::DuplicateName { name: vm.name });
            }
            if !(crate::vmm::RAM_BITS_MIN..=crate::vmm::RAM_BITS_MAX).contains(&vm.memory_bits) {
                return Err(Error::BadMemory { name: vm.name, bits: vm.memory_bits });
            }
            if vm.priority > 254 {
                return Err(Error::BadPriority { name: vm.name, priority: vm.priority });
            }
            if let Some(why) = vm.vcpus_refused() {
                return Err(Error::BadVcpus { name: vm.name, vcpus: vm.vcpus, why });
            }
            if !name_ok(vm.vmm) || !name_ok(vm.guest) {
                return Err(Error::BadModule { name: vm.name });
            }
            if let Some((first, last)) = vm.pass_ports {
                if first > last || crate::io::root_range_covering(first, last).is_none() {
                    return Err(Error::BadPorts { name: vm.name, first, last });
                }
            }
            if let Some(linux) = &vm.linux {
                linux.check().map_err(|why| Error::Linux { name: vm.name, why })?;
            }
            Self::check_devices(vm)?;
            Self::check_device_process(vm)?;
        }
        self.check_console_input()
    }

    /// The VM's devices keep the rules, and none it lists is hidden behind its
    /// `pass_ports` (the standard PC's are: a passed port simply never reaches them).
    fn check_devices(vm: &VmEntry<'a>) -> Result<(), Error<'a>> {
        let set = vm.device_set().map_err(|why| Error::Device { name: vm.name, why })?;
        let (Some((first, last)), Some(_)) = (vm.pass_ports, &vm.devices) else { return Ok(()) };
        for d in set.iter() {
            if d.ports.iter().flatten().any(|&(a, b)| a <= last && first <= b) {
                return Err(Error::DevicePassPorts { name: vm.name, kind: d.kind, first, last });
            }
        }
        Ok(())
    }

    /// A device out of process is one of the VM's, of a kind a device model exists for.
    fn check_device_process(vm: &VmEntry<'a>) -> Result<(), Error<'a>> {
        let Some(p) = vm.device_process else { return Ok(()) };
        let refuse = |why| Err(Error::DeviceProcess { name: vm.name, kind: p.kind, why });
        if !DeviceProcess::KINDS.contains(&p.kind) {
            return refuse("no device model exists for its kind (only uart16550 has one)");
        }
        if !name_ok(p.module) {
            return refuse("the device model's module name is empty or too long");
        }
        match vm.device_set() {
            Ok(set) if set.has(p.kind) => Ok(()),
            _ => refuse("the VM has no such device"),
        }
    }

    /// At most one VM owns the console input, and the driver has a notification to
    /// signal it with.
    fn check_console_input(&self) -> Result<(), Error<'a>> {
        let mut owners = self.vms.iter().filter(|v| v.console_input);
        let Some(first) = owners.next() else { return Ok(()) };
        if let Some(second) = owners.next() {
            return Err(Error::ConsoleInputTwice { first: first.name, second: second.name });
        }
        match self.object(CONSOLE_INPUT_NOTIFICATION) {
            Some((_, ObjectKind::Notification)) => Ok(()),
            _ => Err(Error::ConsoleInputUnsignalled { name: first.name }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Cap, CapEntry, CapError, Error, Expect, GuestMode, Manifest, VmEntry};
    use super::{Object, ObjectKind, ProcessEntry, ProcessError, Start};

    fn vm(name: &'static str) -> VmEntry<'static> {
        VmEntry {
            name,
            vmm: "vmm",
            guest: "guest64",
            mode: GuestMode::Long64,
            memory_bits: 22,
            priority: 200,
            cpu: 0,
            phase: 0,
            hostile: false,
            mutate: false,
            trace: false,
            crash: false,
            crash_on_hypercall: false,
            restart: false,
            expect: Expect::Exit(0),
            pass_ports: None,
            linux: None,
            console_input: false,
            devices: None,
            device_process: None,
            vcpus: 1,
        }
    }

    fn process(name: &'static str) -> ProcessEntry<'static> {
        let mut caps = heapless::Vec::new();
        let report = Cap::Named { name: "report", rights: 0b1000, badge: 0x2a };
        caps.push(CapEntry { slot: 3, cap: report }).unwrap();
        ProcessEntry {
            name,
            module: "p",
            priority: 100,
            cnode_radix: 2,
            arg: 0x1234,
            fault: Some("report"),
            start: Start::AfterVms,
            caps,
        }
    }

    fn empty() -> Manifest<'static> {
        Manifest {
            vms: heapless::Vec::new(),
            objects: heapless::Vec::new(),
            processes: heapless::Vec::new(),
        }
    }

    fn encode(m: &Manifest<'_>) -> Vec<u8> {
        let mut buf = [0u8; 4096];
        postcard::to_slice(m, &mut buf).unwrap().to_vec()
    }

    #[test]
    fn round_trips_with_golden_prefix() {
        let mut m = empty();
        m.vms.push(vm("a")).unwrap();
        let bytes = encode(&m);
        // One entry, then the name "a" (length 1); no objects, no processes at the end.
        assert_eq!(&bytes[..3], &[1, 1, b'a']);
        assert_eq!(&bytes[bytes.len() - 2..], &[0, 0]);
        assert_eq!(Manifest::decode(&bytes), Ok(m));
    }

    #[test]
    fn a_process_round_trips_with_golden_bytes() {
        let mut m = empty();
        m.objects.push(Object { name: "report", kind: ObjectKind::Endpoint }).unwrap();
        m.processes.push(process("p")).unwrap();
        let bytes = encode(&m);
        #[rustfmt::skip]
        let want = [
            0, // no VMs
            1, 6, b'r', b'e', b'p', b'o', b'r', b't', 0, // object "report", an endpoint
            1, 1, b'p', 1, b'p', 100, 2, 0xb4, 0x24, // process "p", module "p", 100, 2^2, arg
            1, 6, b'r', b'e', b'p', b'o', b'r', b't', // fault "report"
            1, // start after the VMs
            1, 3, 2, 6, b'r', b'e', b'p', b'o', b'r', b't', 0b1000, 0x2a, // slot 3: named
        ];
        assert_eq!(bytes, want);
        assert_eq!(Manifest::decode(&bytes), Ok(m));
    }

    #[test]
    fn refuses_bad_processes_by_name() {
        let mut m = empty();
        m.processes.push(process("p")).unwrap();
        let why = ProcessError::BadFault { name: "report" };
        assert_eq!(m.check(), Err(Error::Process { name: "p", why }));
        m.objects.push(Object { name: "report", kind: ObjectKind::Endpoint }).unwrap();
        assert_eq!(m.check(), Ok(()));
        m.objects.push(Object { name: "report", kind: ObjectKind::Notification }).unwrap();
        assert_eq!(m.check(), Err(Error::DuplicateObject { name: "report" }));
        m.objects.pop();
        assert_eq!(m.object("report"), Some((0, ObjectKind::Endpoint)));
        assert_eq!(m.object("other"), None);
        m.processes.push(process("p")).unwrap();
        assert_eq!(m.check(), Err(Error::DuplicateProcess { name: "p" }));
        m.processes[1].name = "";
        assert_eq!(m.check(), Err(Error::BadProcessName { index: 1 }));
        m.processes[1].name = "q";
        m.processes[1].caps[0].slot = 4;
        let why = ProcessError::Cap { slot: 4, why: CapError::OutsideCNode { radix: 2 } };
        let e = Error::Process { name: "q", why };
        assert_eq!(m.check(), Err(e));
        assert_eq!(e.to_string(), "process \"q\": cap in slot 4: outside its CNode of 2^2 slots");
    }

    #[test]
    fn refuses_bad_entries_by_name() {
        let mut m = empty();
        m.vms.push(vm("a")).unwrap();
        m.vms.push(vm("a")).unwrap();
        assert_eq!(m.check(), Err(Error::DuplicateName { name: "a" }));
        m.vms[1].name = "b";
        m.vms[1].memory_bits = 40;
        assert_eq!(m.check(), Err(Error::BadMemory { name: "b", bits: 40 }));
        m.vms[1].memory_bits = 22;
        m.vms[1].priority = 255;
        assert_eq!(m.check(), Err(Error::BadPriority { name: "b", priority: 255 }));
        m.vms[1].priority = 1;
        m.vms[1].guest = "";
        assert_eq!(m.check(), Err(Error::BadModule { name: "b" }));
        m.vms[1].guest = "g";
        m.vms[1].pass_ports = Some((0x80, 0x80));
        assert_eq!(m.check(), Ok(()));
        for (first, last) in [(0x81, 0x80), (0x40, 0x40), (0x1f, 0x22), (0x00, 0xffff)] {
            m.vms[1].pass_ports = Some((first, last));
            assert_eq!(m.check(), Err(Error::BadPorts { name: "b", first, last }));
        }
        m.vms[1].pass_ports = None;
        m.vms[1].linux = Some(super::LinuxBoot { initrd: Some("initramfs"), cmdline: "a\nb" });
        let why = super::LinuxError::CmdlineNotPrintable { at: 1 };
        assert_eq!(m.check(), Err(Error::Linux { name: "b", why }));
        m.vms[1].linux = Some(super::LinuxBoot { initrd: Some("initramfs"), cmdline: "quiet" });
        assert_eq!(Manifest::decode(&encode(&m)), Ok(m.clone()));
        assert_eq!(Manifest::decode(&[0xff, 0xff, 0xff]), Err(Error::Malformed));
        let bytes = encode(&m);
        for cut in 0..bytes.len() {
            let _ = Manifest::decode(&bytes[..cut]);
        }
    }

    #[test]
    fn device_lists_are_checked_and_carried() {
        use crate::devices::{Device, DeviceError, DeviceSet, Kind};
        let mut m = empty();
        m.vms.push(vm("a")).unwrap();
        assert_eq!(m.vms[0].device_set(), Ok(DeviceSet::STANDARD), "no list: the standard PC");
        let mut list = heapless::Vec::<Device, 4>::new();
        for kind in [Kind::Pic8259, Kind::Lapic, Kind::Uart16550, Kind::PostCode] {
            list.push(Device::standard(kind)).unwrap();
        }
        list[2].ports = Some((0x2f8, 0x2ff));
        list[2].irq = Some(3);
        m.vms[0].devices = Some(DeviceSet::check(&list).unwrap());
        assert_eq!(m.check(), Ok(()));
        assert_eq!(Manifest::decode(&encode(&m)), Ok(m.clone()));
        assert_eq!(m.vms[0].device_set().unwrap().uart(), Some((0x2f8, 3)));
        m.vms[0].pass_ports = Some((0x80, 0x80));
        let e = Error::DevicePassPorts { name: "a", kind: Kind::PostCode, first: 0x80, last: 0x80 };
        assert_eq!(m.check(), Err(e));
        assert!(e.to_string().starts_with("vm \"a\": device post_code: its ports overlap"), "{e}");
        m.vms[0].pass_ports = None;
        // A set that arrives breaking the rules (a UART on the cascade) is refused again.
        list[2].irq = Some(5);
        m.vms[0].devices = Some(DeviceSet::check(&list).unwrap());
        let mut bytes = encode(&m);
        let at = bytes.windows(3).position(|w| w == [0xf8, 0x05, 5]).unwrap();
        bytes[at + 2] = 2;
        let why = DeviceError::IrqConflict { kind: Kind::Uart16550, other: Kind::Pic8259, irq: 2 };
        assert_eq!(Manifest::decode(&bytes), Err(Error::Device { name: "a", why }));
    }

    #[test]
    fn at_most_one_vm_owns_the_console_input() {
        use super::CONSOLE_INPUT_NOTIFICATION as INPUT;
        let mut m = empty();
        for name in ["a", "b", "c"] {
            m.vms.push(vm(name)).unwrap();
        }
        m.vms[1].console_input = true;
        assert_eq!(m.check(), Err(Error::ConsoleInputUnsignalled { name: "b" }));
        m.objects.push(Object { name: INPUT, kind: ObjectKind::Endpoint }).unwrap();
        assert_eq!(
            m.check(),
            Err(Error::ConsoleInputUnsignalled { name: "b" }),
            "not a notification"
        );
        m.objects[0].kind = ObjectKind::Notification;
        assert_eq!(m.check(), Ok(()));
        assert_eq!(Manifest::decode(&encode(&m)), Ok(m.clone()));
        m.vms[2].console_input = true;
        let e = Error::ConsoleInputTwice { first: "b", second: "c" };
        assert_eq!(m.check(), Err(e));
        assert!(e.to_string().contains("\"c\": console_input is already taken by vm \"b\""), "{e}");
    }
}
