//! Starting one VMM process per guest module and collecting their reports as test lines.

use crate::alloc::Alloc;
use crate::process;
use protocols::bootinfo::{self, ModuleDesc, BOOTINFO_ADDR};
use protocols::error::Error;
use protocols::object::{vcpu_mode, Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::vmm::{self, slot, stop, REPORT_LABEL};
use rt::ipc::{invoke, recv, reply};
use rt::testing::{expect_eq, Suite};

/// A VM to run and what it must end with.
struct VmTest {
    /// The test line's name.
    name: &'static str,
    /// The guest's boot module.
    module: &'static str,
    /// Its processor mode (`vcpu_mode`).
    mode: u64,
    /// VMM flags (`vmm::flags`).
    flags: u64,
    /// The expected report: (stop reason, exit code).
    want: (u64, u64),
}

const fn vm(
    name: &'static str,
    module: &'static str,
    mode: u64,
    flags: u64,
    want: (u64, u64),
) -> VmTest {
    VmTest { name, module, mode, flags, want }
}

/// The VMs. The hostile VMM runs beside the others, which must not notice.
const GUESTS: &[VmTest] = &[
    vm("vm_guest64", "guest64", vcpu_mode::LONG64, 0, (stop::EXITED, 0)),
    vm("vm_guest32", "guest32", vcpu_mode::PROTECTED32, 0, (stop::EXITED, 0)),
    vm("vm_guest_real", "guest_real", vcpu_mode::REAL, 0, (stop::EXITED, 0)),
    vm("vm_guest_triple", "guest_triple", vcpu_mode::LONG64, 0, (stop::TRIPLE_FAULT, 0)),
    vm(
        "vm_hostile_vmm_refused",
        "guest64",
        vcpu_mode::LONG64,
        vmm::flags::HOSTILE,
        (stop::EXITED, 0),
    ),
    vm("vm_guest_bench", "guest_bench", vcpu_mode::LONG64, 0, (stop::EXITED, 0)),
];

/// What the kernel says this CPU can run (`bootinfo::vmx` bits).
fn vmx_features() -> u64 {
    // SAFETY: the kernel maps the boot-information page read-only at BOOTINFO_ADDR.
    unsafe { (BOOTINFO_ADDR as *const u64).add(bootinfo::word::VMX_FEATURES).read() }
}

/// Whether a guest in `mode` can run with `features`: every guest needs EPT; real mode
/// and unpaged protected mode need unrestricted guest.
fn runnable(mode: u64, features: u64) -> bool {
    let mut need = bootinfo::vmx::VCPUS | bootinfo::vmx::EPT;
    if mode != vcpu_mode::LONG64 {
        need |= bootinfo::vmx::UNRESTRICTED_GUEST;
    }
    features & need == need
}

/// log2 of the untyped memory each VMM gets.
const VMM_UNTYPED_BITS: u64 = 22;

/// Run every guest whose module is present, one VMM process each, all at once; report.
pub fn run(t: &mut Suite, a: &mut Alloc) -> Result<(), Error> {
    let Some(vmm) = process::module("vmm") else { return Ok(()) };
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
    rt::println!("init: VT-x features {features:#x}: starting the test VMs");
    let image = process::map_module(a, &vmm)?;
    let report = a.make(ObjectType::Endpoint, 0)?;
    // The test VMs run side by side; the benchmark VM runs alone afterwards, so other
    // VMs' time slices do not pollute its figures.
    let (tests, bench): (u64, u64) = (0b01_1111, 0b10_0000);
    for phase in [tests, bench] {
        let mut started = 0u64;
        for (badge, vm) in GUESTS.iter().enumerate() {
            let Some(guest) = process::module(vm.module).filter(|_| phase & (1 << badge) != 0)
            else {
                continue;
            };
            let arg = guest.size | (vm.mode << 48) | (vm.flags << 56);
            start_vmm(a, image, &guest, arg, report, badge as u64 + 1)?;
            started |= 1 << badge;
        }
        collect(t, report, started, features)?;
    }
    Ok(())
}

/// Start one VMM process for `guest`, reporting on `report` with `badge`.
fn start_vmm(
    a: &mut Alloc,
    image: &[u8],
    guest: &ModuleDesc,
    arg: u64,
    report: u64,
    badge: u64,
) -> Result<(), Error> {
    let all = u64::from(Rights::ALL.bits());
    let p = process::spawn(a, image, u64::from(vmm::CNODE_RADIX), 200, u64::MAX, arg)?;
    let ut = a.make(ObjectType::Untyped, VMM_UNTYPED_BITS)?;
    invoke(p.cnode, Invocation::CNodeMove, &[ut, slot::UNTYPED])?;
    invoke(p.cnode, Invocation::CNodeMint, &[report, slot::REPORT, all, badge])?;
    let read = u64::from(Rights::READ.bits());
    for i in 0..guest.pages() {
        invoke(
            p.cnode,
            Invocation::CNodeCopy,
            &[guest.first_slot + i, slot::FIRST_IMAGE_FRAME + i, read],
        )?;
    }
    process::start(&p)
}

/// Wait for the reports of every VM in `started` and check each.
fn collect(t: &mut Suite, report: u64, mut started: u64, features: u64) -> Result<(), Error> {
    while started != 0 {
        let r = recv(report)?;
        let index = r.badge.wrapping_sub(1);
        let Some(vm) = GUESTS.get(index as usize) else { continue };
        started &= !(1 << index);
        let want = if runnable(vm.mode, features) { vm.want } else { (stop::NOT_SUPPORTED, 0) };
        let got = if r.msg.info.label == REPORT_LABEL {
            (r.msg.words[2], r.msg.words[0])
        } else {
            (u64::MAX, r.msg.info.label)
        };
        t.check(vm.name, expect_eq(got, want));
        reply(&rt::ipc::Msg::default())?;
    }
    Ok(())
}
