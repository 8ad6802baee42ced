//! The VMM process: one per VM. It builds the VM from the untyped memory and guest image
//! the root task gave it (guest RAM mapped both into the guest space and into its own
//! address space, a VCpu, an exit endpoint, a message frame), then serves exits:
//! receive, emulate with [`vmm_server::dispatch::Vm`], reply with a VMCS-write batch.
//! Its log and the guest's console output go to the console driver, whose badged
//! endpoint the root task puts in its CSpace (the kernel's debug console without one).
#![cfg_attr(target_os = "none", no_std, no_main)]

rt::entry!(start);

#[cfg(target_os = "none")]
mod process {
    /// Print a line of this VMM's log, `vmm NAME: ...` with the VM's name from the
    /// manifest, so that the lines of several VMs can be told apart.
    macro_rules! say {
        ($($arg:tt)*) => {
            rt::println!("vmm {}: {}", crate::process::vm_name(), format_args!($($arg)*))
        };
    }
    use core::sync::atomic::{AtomicBool, Ordering};
    use protocols::device_model;
    use protocols::devices::DeviceSet;
    use protocols::error::Error;
    use protocols::ipc::MsgInfo;
    use protocols::object::{map, vcpu_mode, vm, Invocation, ObjectType};
    use protocols::rights::Rights;
    use protocols::syscall::Syscall;
    use protocols::vcpu_page;
    use protocols::vmcs::ctl::proc;
    use protocols::vmexit::{ExitMessage, ExitReason, TransferMask};
    use protocols::vmm::{self, flags as vmm_flags, slot, stop, VmDescription, REPORT_LABEL};
    use rt::ipc::{invoke, ipc_raw, ipc_regs, retype, Msg, Received};
    use state_region::{Answered, Restartable, StateRegion};
    use vmm_server::acpi;
    use vmm_server::cpuid::CpuidRegs;
    use vmm_server::devices::cmos_rtc::{unix_from_civil, DateTime};
    use vmm_server::devices::remote::{Bulk, LinkError};
    use vmm_server::devices::uart16550::LineSink;
    use vmm_server::dispatch::{RunState, StopReason, Vm, VmConfig};
    use vmm_server::exit_qualification::IoQualification;
    use vmm_server::guest_image;
    use vmm_server::guest_memory::SliceMemory;
    use vmm_server::linux_boot::{self, LinuxBootError, LinuxImage};
    use vmm_server::pending_input::PendingInput;
    use vmm_server::serve::{answer_into, offer_input, wake_parked};
    use vmm_server::vcpu_refusal::{self, StartRefusal};

    mod input;
    mod state_region;
    #[cfg(feature = "test-modes")]
    mod test_modes;
    #[cfg(feature = "test-modes")]
    use test_modes::Recorder;

    /// A VMM built without test modes records nothing.
    #[cfg(not(feature = "test-modes"))]
    struct Recorder;

    #[cfg(not(feature = "test-modes"))]
    impl Recorder {
        fn record(&mut self, _: &ExitMessage, _: &protocols::vmexit::ExitReply) {}
        fn finish(self) {}
    }

    /// The VM a serving VMM runs.
    type ServedVm = Vm<SliceMemory<'static>, LineSink>;

    /// Where this VMM sees the guest's image (and a Linux VM's initramfs after it).
    const IMAGE_VA: u64 = 0x1000_0000;
    const MSG_VA: u64 = 0x1800_0000;
    const DESCRIPTION_VA: u64 = 0x1801_0000;
    /// Where this VMM sees guest RAM (up to 1 GiB, with 2 MiB pages).
    const RAM_VA: u64 = 0x4000_0000;
    /// Guest RAM comes in 2 MiB frames, mapped at guest-physical 0 and at `RAM_VA`.
    const RAM_FRAME: u64 = 1 << 21;
    const MAX_RAM_FRAMES: u64 = 1 << (vmm::RAM_BITS_MAX - 21);
    const FIRST_FREE: u64 = slot::FIRST_IMAGE_FRAME + vmm::MAX_IMAGE_PAGES;
    const RAM_GUEST: u64 = FIRST_FREE;
    const RAM_OWN: u64 = RAM_GUEST + MAX_RAM_FRAMES;
    const GUEST_SPACE: u64 = RAM_OWN + MAX_RAM_FRAMES;
    const VCPU: u64 = GUEST_SPACE + 1;
    const EXIT_EP: u64 = GUEST_SPACE + 2;
    const MSG_FRAME: u64 = GUEST_SPACE + 3;
    /// The saved-state region's frames (a restartable VM), after `input::SLOTS`.
    const STATE_FIRST: u64 = GUEST_SPACE + 7;
    /// vCPUs 1 and up: each one's VCpu, badged exit endpoint and message frame, in
    /// threes after the saved-state region (vCPU 0's are `VCPU`, `EXIT_EP`, `MSG_FRAME`).
    const OTHER_VCPUS: u64 = STATE_FIRST + state_region::MAX_PAGES;
    const _: () = assert!(OTHER_VCPUS + 3 * vmm::MAX_VCPUS as u64 <= 1 << vmm::CNODE_RADIX);
    const PRIORITY: u64 = 200;

    /// vCPU `index`'s slots: its VCpu, its exit endpoint (badged with the index, which
    /// the serving loop reads), its message frame.
    const fn vcpu_slots(index: usize) -> (u64, u64, u64) {
        match index {
            0 => (VCPU, EXIT_EP, MSG_FRAME),
            i => {
                let at = OTHER_VCPUS + 3 * (i as u64 - 1);
                (at, at + 1, at + 2)
            }
        }
    }

    fn rdtsc() -> u64 {
        // SAFETY: RDTSC only reads the time-stamp counter (CR4.TSD is clear).
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn host_cpuid(leaf: u32, subleaf: u32) -> CpuidRegs {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidRegs { eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx }
    }

    /// What the VM boots: the test guest or Linux kernel image (its frames from
    /// `slot::FIRST_IMAGE_FRAME` on), and for Linux the initramfs (the frames after the
    /// kernel's) and the command line.
    struct Boot {
        image: &'static [u8],
        linux: Option<(&'static [u8], &'static str)>,
        /// The host's time when the VM was made (Unix seconds; 0 when unknown).
        unix_time: i64,
        /// The VM's devices, checked.
        devices: DeviceSet,
    }

    impl Boot {
        /// Map the image's frames (and a Linux VM's description and initramfs).
        fn map(image_size: u64, linux: bool) -> Result<Self, Error> {
            let (initrd_size, cmdline, unix_time) = description()?;
            let devices = devices()?;
            let (initrd_size, cmdline) = if linux { (initrd_size, cmdline) } else { (0, "") };
            let image_pages = image_size.div_ceil(4096);
            let pages = image_pages + initrd_size.div_ceil(4096);
            if pages > vmm::MAX_IMAGE_PAGES {
                say!(
                    "the guest's image of {pages} pages is larger than {} pages",
                    vmm::MAX_IMAGE_PAGES
                );
                return Err(Error::InvalidArgument);
            }
            for i in 0..pages {
                invoke(
                    slot::FIRST_IMAGE_FRAME + i,
                    Invocation::FrameMap,
                    &[slot::VSPACE, IMAGE_VA + i * 4096, 0],
                )?;
            }
            // SAFETY: the image's frames were just mapped read-only from IMAGE_VA, the
            // initramfs's from the page after the kernel's last; they stay mapped.
            let bytes = |at: u64, len: u64| unsafe {
                core::slice::from_raw_parts((IMAGE_VA + at) as *const u8, len as usize)
            };
            let image = bytes(0, image_size);
            let linux = linux.then(|| (bytes(image_pages * 4096, initrd_size), cmdline));
            Ok(Self { image, linux, unix_time, devices })
        }
    }

    /// Whether the description frame is mapped at `DESCRIPTION_VA`.
    static DESCRIBED: AtomicBool = AtomicBool::new(false);

    /// Map the frame in `frame` at `va` with `rights`. A restarted VMM's frames still
    /// name the crashed one's address space: each is unmapped first (a frame mapped
    /// nowhere, or in an address space that is gone, is left as it is).
    fn map_frame(frame: u64, va: u64, rights: u64) -> Result<(), Error> {
        invoke(frame, Invocation::FrameUnmap, &[])?;
        invoke(frame, Invocation::FrameMap, &[slot::VSPACE, va, rights]).map(|_| ())
    }

    /// The VM's vCPUs and where they go: `(count, first CPU, CPUs online)`, checked.
    fn vcpus_described() -> Result<(usize, u64, u64), Error> {
        let Some(d) = described() else { return Err(Error::InvalidArgument) };
        if !(1..=u64::from(vmm::MAX_VCPUS)).contains(&d.vcpus) {
            say!("the VM's description asks for {} vCPUs (1 to {})", d.vcpus, vmm::MAX_VCPUS);
            return Err(Error::InvalidArgument);
        }
        Ok((d.vcpus as usize, d.cpu, d.cpus.max(1)))
    }

    /// Map the VM's description (once, first thing: the log lines need its name).
    fn map_description() -> Result<(), Error> {
        map_frame(slot::DESCRIPTION, DESCRIPTION_VA, 0)?;
        DESCRIBED.store(true, Ordering::Release);
        // A panic from here on names the VM too.
        rt::identity::set("vmm", vm_name());
        Ok(())
    }

    fn described() -> Option<&'static VmDescription> {
        // SAFETY: once DESCRIBED is set the description frame is mapped read-only at
        // DESCRIPTION_VA for good; the type is plain data, valid for any bytes.
        DESCRIBED
            .load(Ordering::Acquire)
            .then(|| unsafe { &*(DESCRIPTION_VA as *const VmDescription) })
    }

    /// The VM's name from the manifest ("?" before or without a description).
    pub fn vm_name() -> &'static str {
        described().and_then(VmDescription::name).unwrap_or("?")
    }

    /// The VM's description: `(initramfs size, command line, host Unix time)`.
    fn description() -> Result<(u64, &'static str, i64), Error> {
        let Some((d, cmdline)) = described().and_then(|d| Some((d, d.cmdline()?))) else {
            say!("the VM's description is malformed");
            return Err(Error::InvalidArgument);
        };
        let t = d.host_date;
        let unix_time = if t.valid == 0 {
            0
        } else {
            unix_from_civil(&DateTime {
                year: i64::from(t.year),
                month: t.month,
                day: t.day,
                hour: t.hour,
                minute: t.minute,
                second: t.second,
                weekday: 0,
            })
        };
        Ok((d.initrd_size, cmdline, unix_time))
    }

    /// The VM's devices from its description, checked again: a table the rules refuse
    /// stops the VM before anything is built, naming the device.
    fn devices() -> Result<DeviceSet, Error> {
        let Some(d) = described() else {
            say!("the VM's description is malformed");
            return Err(Error::InvalidArgument);
        };
        d.devices().map_err(|e| {
            say!("the VM's device table is refused: {e}");
            Error::InvalidArgument
        })
    }

    /// Build the VM with 2^`ram_bits` bytes of RAM; returns guest RAM as bytes and the
    /// guest's entry point.
    fn build(image_size: u64, ram_bits: u8, mode: u64, flags: u64) -> Result<Built, Error> {
        if !(vmm::RAM_BITS_MIN..=vmm::RAM_BITS_MAX).contains(&ram_bits) {
            say!("guest RAM of 2^{ram_bits} bytes is outside 2 MiB..=1 GiB");
            return Err(Error::InvalidArgument);
        }
        let ram_bytes = 1u64 << ram_bits;
        let boot = Boot::map(image_size, flags & vmm_flags::LINUX != 0)?;
        retype(slot::UNTYPED, ObjectType::GuestSpace, 15, GUEST_SPACE, 1)?;
        retype(slot::UNTYPED, ObjectType::VCpu, 0, VCPU, 1).inspect_err(|&e| {
            if e == Error::NotSupported {
                say!("no VM can run here: VCpu creation is not supported (VT-x absent or unusable; the kernel's boot log says which)");
            }
        })?;
        retype(slot::UNTYPED, ObjectType::Endpoint, 0, EXIT_EP, 1)?;
        retype(slot::UNTYPED, ObjectType::Frame, 0, MSG_FRAME, 1)?;
        invoke(MSG_FRAME, Invocation::FrameMap, &[slot::VSPACE, MSG_VA, map::WRITE])?;
        let all = u64::from(Rights::ALL.bits());
        let (vcpus, first_cpu, cpus) = vcpus_described()?;
        for index in 1..vcpus {
            let (vcpu, ep, frame) = vcpu_slots(index);
            retype(slot::UNTYPED, ObjectType::VCpu, 0, vcpu, 1)?;
            retype(slot::UNTYPED, ObjectType::Frame, 0, frame, 1)?;
            invoke(frame, Invocation::FrameMap, &[slot::VSPACE, page_va(index), map::WRITE])?;
            invoke(slot::CNODE, Invocation::CNodeMint, &[EXIT_EP, ep, all, index as u64])?;
            // Each on a CPU of its own where there are enough.
            let cpu = (first_cpu + index as u64) % cpus;
            if let Err(e) = invoke(vcpu, Invocation::TcbSetAffinity, &[cpu]) {
                say!("vCPU {index} stays on CPU {first_cpu}: CPU {cpu} refused ({})", e.name());
            }
        }
        // One capability per 2 MiB: a 128 MiB VM takes 64 frames, not 32,768.
        let frames = ram_bytes / RAM_FRAME;
        retype(slot::RAM_UNTYPED, ObjectType::LargeFrame, 0, RAM_GUEST, frames)?;
        for i in 0..frames {
            let rwx = map::WRITE | map::EXECUTE;
            let at = i * RAM_FRAME;
            invoke(RAM_GUEST + i, Invocation::FrameMapGuest, &[GUEST_SPACE, at, rwx])?;
            invoke(slot::CNODE, Invocation::CNodeCopy, &[RAM_GUEST + i, RAM_OWN + i, all])?;
            invoke(RAM_OWN + i, Invocation::FrameMap, &[slot::VSPACE, RAM_VA + at, map::WRITE])?;
        }
        // SAFETY: the RAM frames were just mapped writable and contiguous at RAM_VA; they
        // stay mapped for the VMM's life and nothing else in this process aliases them.
        let ram = unsafe { core::slice::from_raw_parts_mut(RAM_VA as *mut u8, ram_bytes as usize) };
        let start = match boot.linux {
            Some((initrd, cmdline)) => {
                load_linux(boot.image, initrd, cmdline, (&boot.devices, vcpus), ram)?
            }
            None => {
                let img = guest_image::parse(boot.image, ram_bytes).map_err(|e| {
                    say!("guest image refused: {e:?}");
                    Error::InvalidArgument
                })?;
                guest_image::load(&img, boot.image, ram).map_err(|_| Error::InvalidArgument)?;
                Start::test_guest(mode, img.entry)
            }
        };
        for index in 0..vcpus {
            let (vcpu, ep, frame) = vcpu_slots(index);
            invoke(
                vcpu,
                Invocation::VCpuConfigure,
                // The controls on every exit: they cost no VMREAD (the kernel's own copy).
                &[GUEST_SPACE, ep, frame, TransferMask::CONTROLS.bits()],
            )?;
            // What each exit carries: what the dispatcher reads of it, no more.
            if let Some(table) = vcpu_page::transfer_table_mut(page(index)) {
                *table = vmm_server::serve::transfer_table();
            }
            pass_through(vcpu)?;
        }
        if let (Some(entry), Some(reply)) = (&start.linux, vcpu_page::reply_mut(page(0))) {
            *reply = linux_boot::start_batch(entry);
        }
        let started = rdtsc();
        let words = start_words(mode, &start, vcpus > 1);
        start_vcpu(VCPU, &words)?;
        Ok(Built {
            ram,
            #[cfg(feature = "test-modes")]
            entry: start.rip,
            unix_time: boot.unix_time,
            devices: boot.devices,
            vcpus: vcpus as u8,
            started,
        })
    }

    /// A built VM: its RAM, its entry point, the host's time for its clock, and the TSC
    /// when its vCPU started (for the VM's run time in its closing line).
    struct Built {
        ram: &'static mut [u8],
        /// Where the test modes start the vCPU again.
        #[cfg(feature = "test-modes")]
        entry: u64,
        unix_time: i64,
        devices: DeviceSet,
        /// How many vCPUs were made (the description's count, checked).
        vcpus: u8,
        started: u64,
    }

    /// How the vCPU starts: `VCpuStart`'s entry RIP, RSP and CR3, and for Linux the
    /// entry state its start batch sets.
    struct Start {
        rip: u64,
        rsp: u64,
        cr3: u64,
        linux: Option<linux_boot::Entry>,
    }

    impl Start {
        /// A test guest: its entry point, a stack below 32 KiB, and for 64-bit guests the
        /// page tables they carry at 1 MiB.
        fn test_guest(mode: u64, entry: u64) -> Self {
            let cr3 = if mode == vcpu_mode::LONG64 { 0x10_0000 } else { 0 };
            Self { rip: entry, rsp: 0x8000, cr3, linux: None }
        }
    }

    /// Load a Linux kernel, its initramfs and command line into `ram` by the Linux boot
    /// protocol; returns how its vCPU starts. Every refusal names the check.
    fn load_linux(
        kernel: &[u8],
        initrd: &[u8],
        cmdline: &str,
        (devices, vcpus): (&DeviceSet, usize),
        ram: &mut [u8],
    ) -> Result<Start, Error> {
        let refused = |e: LinuxBootError| {
            say!("the Linux kernel cannot boot: {e}");
            Error::InvalidArgument
        };
        let image = LinuxImage::parse(kernel).map_err(refused)?;
        let ram_bytes = ram.len() as u64;
        let mut plan = linux_boot::plan(&image, ram_bytes, cmdline.as_bytes(), initrd.len() as u64)
            .map_err(refused)?;
        // The platform's ACPI tables, as firmware would leave them in the BIOS area (the
        // e820 map reserves it): the APIC, the IOAPIC, the PM registers, S5, as far as
        // the VM has them (none without the PM registers).
        // One processor entry per vCPU, APIC IDs 0 up (as `Vm` gives them).
        let ids: heapless::Vec<u8, { vmm::MAX_VCPUS as usize }> = (0..vcpus as u8).collect();
        if let Some(config) = acpi::AcpiConfig::for_devices(&ids, devices) {
            let tables = ram
                .get_mut(acpi::STANDARD_BASE as usize..)
                .and_then(|r| r.get_mut(..acpi::STANDARD_REGION_LEN))
                .ok_or(Error::InvalidArgument)?;
            let layout = acpi::build(&config, acpi::STANDARD_BASE, tables).map_err(|e| {
                say!("no ACPI tables: {e}");
                Error::InvalidArgument
            })?;
            plan.acpi_rsdp = layout.rsdp;
        }
        plan.write(&image, cmdline.as_bytes(), initrd, &mut SliceMemory::new(0, ram))
            .map_err(refused)?;
        say!(
            "Linux boot protocol {}.{:02}: kernel of {} KiB at {:#x}, initramfs of {} KiB at {:#x}, {} MiB of RAM",
            image.version >> 8,
            image.version & 0xff,
            plan.kernel_len / 1024,
            plan.kernel,
            plan.initrd_len / 1024,
            plan.initrd,
            ram_bytes >> 20
        );
        let e = plan.entry;
        Ok(Start { rip: e.rip, rsp: e.rsp, cr3: e.cr3, linux: Some(e) })
    }

    /// `VCpuStart` on `vcpu` with `words`. The kernel prints nothing: a refusal names the
    /// check its initial VMCS failed in the result registers, and this VMM says it.
    fn start_vcpu(vcpu: u64, words: &[u64; 4]) -> Result<(), Error> {
        let start = Msg::new(Invocation::VCpuStart as u64, words);
        let (status, r) = ipc_raw(Syscall::Call, vcpu, &start, 0, 0);
        let Err(e) = protocols::error::check(status).map_err(rt::ipc::error) else {
            return Ok(());
        };
        let [rdx, r10, r8, _] = r.msg.words;
        say!("the kernel cannot start this guest: {}", StartRefusal::new(e, [rdx, r10, r8]));
        Err(e)
    }

    /// Wait on the exit endpoint, for the serving loop.
    fn recv_regs() -> Result<rt::ipc::Regs, Error> {
        let r = ipc_regs(Syscall::Recv, EXIT_EP, &Msg::default(), 0, 0);
        protocols::error::check(r.status).map(|()| r).map_err(rt::ipc::error)
    }

    /// Whether `r`, received on the exit endpoint, says the kernel stopped the vCPU (a
    /// VMX instruction failed), which is then printed.
    fn kernel_stopped(r: &Received) -> bool {
        let Some(why) = vcpu_refusal::stopped(r.msg.info.label, r.msg.words) else {
            return false;
        };
        say!("the kernel stopped the vCPU: {why}");
        true
    }

    /// Ask the kernel for what the guest reaches without exiting: the ports of the
    /// `IoPorts` capability the root task gave this VMM, if any, and the MSRs the VMCS
    /// does not hold, which the kernel switches on entry and exit (starting at their reset
    /// value, 0). An MSR this CPU lacks stays intercepted (and stops the VM if used).
    fn pass_through(vcpu: u64) -> Result<(), Error> {
        match invoke(vcpu, Invocation::VCpuPassPorts, &[slot::PASS_PORTS]) {
            Ok(_) | Err(Error::InvalidCapability) => {}
            Err(e) => return Err(e),
        }
        for msr in vm::SWITCHABLE_MSRS {
            match invoke(vcpu, Invocation::VCpuSwitchMsr, &[msr.into(), 0]) {
                Ok(_) | Err(Error::NotSupported) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `VCpuStart`'s words: the mode (with the start batch for Linux), the vCPU's
    /// priority and exits ([`vcpu_controls`]), RIP, RSP and CR3.
    fn start_words(mode: u64, start: &Start, smp: bool) -> [u64; 4] {
        let mode = if start.linux.is_some() { mode | vcpu_mode::WITH_BATCH } else { mode };
        [mode | vcpu_controls(smp), start.rip, start.rsp, start.cr3]
    }

    /// `VCpuStart`'s priority and primary controls. One vCPU runs at this VMM's priority
    /// and exits on HLT (a halted guest skips to its next timer event, or its reply waits
    /// for input). Several vCPUs run one below it, so that this VMM, on vCPU 0's CPU,
    /// takes the others' exits at once; and they halt in their guests, where an
    /// interrupt, their preemption timer or a kick wakes them (time cannot skip for one
    /// vCPU while another runs). Both exit on MONITOR and MWAIT.
    fn vcpu_controls(smp: bool) -> u64 {
        let mut controls = proc::MWAIT_EXITING | proc::MONITOR_EXITING;
        if !smp {
            controls |= proc::HLT_EXITING;
        }
        let priority = if smp { PRIORITY - 1 } else { PRIORITY };
        (priority << 8) | (u64::from(controls) << 16)
    }

    /// Start application processor `index` as its STARTUP asks, in real mode at page
    /// `vector`, with its control-register policy: the start batch in its page.
    fn start_application_processor(vm: &ServedVm, index: usize, vector: u8) {
        let (Some(batch), Some(reply)) =
            (vm.start_batch(index, vector), vcpu_page::reply_mut(page(index)))
        else {
            return;
        };
        *reply = batch;
        let words = [vcpu_mode::REAL | vcpu_mode::WITH_BATCH | vcpu_controls(true), 0, 0, 0];
        if start_vcpu(vcpu_slots(index).0, &words).is_ok() {
            say!("vCPU {index} started at {:#x}", u64::from(vector) << 12);
        }
    }

    /// Serve the vCPU the exit endpoint's `badge` names; returns its state page, or
    /// `None` (said) for a vCPU this VM has not started. Out of line: one vCPU never
    /// comes here.
    #[inline(never)]
    fn serve_vcpu(vm: &mut ServedVm, badge: u64) -> Option<&'static mut [u8]> {
        let index = badge as usize;
        if !vm.serve_vcpu(index) {
            say!("an exit from vCPU {index}, which this VM has not started");
            return None;
        }
        Some(page(index))
    }

    /// What an exit did to the other vCPUs: a start, an interrupt to inject.
    #[inline(never)]
    fn after_vcpu_exit(vm: &mut ServedVm) {
        while let Some((ap, vector)) = vm.take_start() {
            start_application_processor(vm, ap, vector);
        }
        kick(vm.take_kicks());
    }

    /// Make the vCPUs in `mask` leave their guests for this VMM (`VCpuKick`): an
    /// interrupt waits for each.
    fn kick(mut mask: u32) {
        while mask != 0 {
            let index = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            // A vCPU waiting for this VMM needs none; the kernel says so and does nothing.
            let _ = invoke(vcpu_slots(index).0, Invocation::VCpuKick, &[]);
        }
    }

    /// Where vCPU `index`'s state page is mapped: one page each from MSG_VA.
    const fn page_va(index: usize) -> u64 {
        MSG_VA + index as u64 * vcpu_page::PAGE_SIZE as u64
    }

    /// vCPU `index`'s state page. The kernel writes its exit area only while the serving
    /// thread is blocked in a syscall, and reads the reply area only then (the input
    /// thread never touches the pages): each view lives from one syscall to the next.
    fn page(index: usize) -> &'static mut [u8] {
        let index = index.min(vmm::MAX_VCPUS as usize - 1);
        // SAFETY: the frames are mapped writable from MSG_VA for the VMM's life (`build`;
        // vCPU 0's always, the others' before any exit of theirs), and no other view of
        // one outlives the caller's use between two syscalls.
        unsafe { core::slice::from_raw_parts_mut(page_va(index) as *mut u8, vcpu_page::PAGE_SIZE) }
    }

    /// The clock the kernel wrote into the vCPU state page at `VCpuConfigure`: the host's
    /// TSC rate and what of the preemption timer and TSC offsetting this VMM may use.
    fn host_clock() -> vcpu_page::Clock {
        vcpu_page::clock(page(0)).copied().unwrap_or_default()
    }

    /// Where this VMM sees the page it shares with its device process.
    const DEVICE_PAGE_VA: u64 = 0x1803_0000;

    /// Whether this VM has a device out of process (`slot::DEVICE_LINE` holds the
    /// notification its process signals); if so, map the page shared with it.
    fn device_process() -> Result<bool, Error> {
        match rt::ipc::nb_recv(slot::DEVICE_LINE) {
            Ok(_) => {}
            Err(Error::InvalidCapability) => return Ok(false),
            Err(e) => return Err(e),
        }
        map_frame(slot::DEVICE_PAGE, DEVICE_PAGE_VA, map::WRITE)?;
        Ok(true)
    }

    /// The page shared with the device process, mapped at `DEVICE_PAGE_VA`.
    fn device_page() -> &'static mut [u8] {
        // SAFETY: `device_process` mapped the frame writable at DEVICE_PAGE_VA for the
        // VMM's life before any request; only the serving thread uses it, one view per
        // request, and the device process touches it only while this thread waits in
        // its call.
        unsafe {
            core::slice::from_raw_parts_mut(DEVICE_PAGE_VA as *mut u8, device_model::PAGE_SIZE)
        }
    }

    /// The link to the device process: one call per request, string I/O's elements
    /// through the shared page.
    fn device_link(
        request: &device_model::Request,
        bulk: Bulk<'_>,
    ) -> Result<device_model::Response, LinkError> {
        if let Bulk::Out(bytes) = &bulk {
            if let Some(page) = device_page().get_mut(..bytes.len()) {
                page.copy_from_slice(bytes);
            }
        }
        let (info, words) = request.encode();
        let r =
            rt::ipc::call(slot::DEVICE_ENDPOINT, &Msg { info, words }).map_err(LinkError::Ipc)?;
        let response =
            device_model::Response::decode(r.msg.info, r.msg.words).map_err(LinkError::Reply)?;
        if let Bulk::In(room) = bulk {
            if let Some(page) = device_page().get(..room.len()) {
                room.copy_from_slice(page);
            }
        }
        Ok(response)
    }

    /// The port guest_bench times: COM1's scratch register, which has no side effects.
    const BENCH_PORT: u16 =
        vmm_server::platform::COM1 + vmm_server::devices::uart16550::reg::SCR as u16;

    /// Where the ticks of this VM's CPUID and port-I/O round trips go: the kernel's exit
    /// leg (VM exit to this process running, from the exit's TSC stamp), this VMM, and
    /// the kernel's entry leg (its reply to the next VM entry, from the next exit's
    /// stamp). Two TSC reads on every `SAMPLE`th exit, the same method for all three.
    #[derive(Default)]
    struct Legs {
        /// Exits seen, to pick the sampled ones.
        seen: u64,
        /// Per kind (CPUID, port I/O, MMIO): exit-leg, VMM and entry-leg sums.
        sum: [[u64; 3]; 3],
        /// Per kind: exits measured, entries measured.
        count: [[u64; 2]; 3],
        /// The kind and TSC of the last reply, until the next exit says when it entered.
        replied: Option<(usize, u64)>,
    }

    impl Legs {
        const SAMPLE: u64 = 16;

        /// Whether this exit is one to time.
        fn due(&mut self) -> bool {
            self.seen = self.seen.wrapping_add(1);
            self.seen.is_multiple_of(Self::SAMPLE)
        }

        /// The kind of a timed exit: CPUID, port I/O to the benchmark's port (the
        /// UART's other ports print, and a printed line costs the VMM a console IPC that
        /// is no part of an exit), or an EPT violation (MMIO).
        fn kind(msg: &ExitMessage) -> Option<usize> {
            match msg.basic_reason() {
                Some(ExitReason::Cpuid) => Some(0),
                Some(ExitReason::EptViolation) => Some(2),
                Some(ExitReason::IoInstruction)
                    if IoQualification::decode(msg.qualification)
                        .is_ok_and(|q| q.port == BENCH_PORT) =>
                {
                    Some(1)
                }
                _ => None,
            }
        }

        /// An exit: the entry leg of the last timed reply ends here. Only after a timed
        /// reply is there anything to do (one test on the other exits).
        #[inline(always)]
        fn exit(&mut self, msg: &ExitMessage) {
            if self.replied.is_some() {
                self.entered(msg);
            }
        }

        #[inline(never)]
        fn entered(&mut self, msg: &ExitMessage) {
            if let Some((k, at)) = self.replied.take() {
                if let (Some(sum), Some(count)) = (self.sum.get_mut(k), self.count.get_mut(k)) {
                    sum[2] = sum[2].wrapping_add(msg.entry_tsc.wrapping_sub(at));
                    count[1] += 1;
                }
            }
        }

        fn reply(&mut self, msg: &ExitMessage, woke: u64) {
            let Some(k) = Self::kind(msg) else { return };
            let now = rdtsc();
            if let (Some(sum), Some(count)) = (self.sum.get_mut(k), self.count.get_mut(k)) {
                sum[0] = sum[0].wrapping_add(woke.wrapping_sub(msg.exit_tsc));
                sum[1] = sum[1].wrapping_add(now.wrapping_sub(woke));
                count[0] += 1;
            }
            self.replied = Some((k, now));
        }

        fn print(&self) {
            let avg = |k: usize, leg: usize| {
                let n = self.count[k][usize::from(leg == 2)];
                self.sum[k][leg].checked_div(n).unwrap_or(0)
            };
            say!(
                "round-trip legs in ticks (kernel exit, VMM, kernel entry): cpuid {} {} {}, port-io {} {} {}, mmio {} {} {}",
                avg(0, 0),
                avg(0, 1),
                avg(0, 2),
                avg(1, 0),
                avg(1, 1),
                avg(1, 2),
                avg(2, 0),
                avg(2, 1),
                avg(2, 2)
            );
        }
    }

    /// A new VM on `ram` (and the recorder of a traced one).
    fn new_vm(
        ram: &'static mut [u8],
        (mode, config): (u64, &VmConfig),
        flags: u64,
    ) -> Result<(ServedVm, Option<Recorder>), Error> {
        let sink = LineSink::new(rt::console::write);
        let traced = flags & vmm_flags::TRACE != 0;
        #[cfg(feature = "test-modes")]
        {
            let (mut vm, recorder) = test_modes::traced_vm(ram, (mode, config), traced, sink)?;
            if flags & vmm_flags::LINUX == 0 {
                test_modes::map_scratch(&mut vm)?;
            }
            Ok((vm, recorder))
        }
        #[cfg(not(feature = "test-modes"))]
        {
            let _ = (traced, mode); // refused in `run` without test modes; no mode to trace
            let vm = Vm::new(config, host_cpuid, SliceMemory::new(0, ram), sink)
                .map_err(|_| Error::InvalidArgument)?;
            Ok((vm, None))
        }
    }

    /// Serve `vm`'s exits until it stops; `first` before its first exit. `after` sees
    /// each exit once it is answered, before the reply goes out (a restartable VM's
    /// commit).
    fn serve(
        (mut vm, mut recorder): (ServedVm, Option<Recorder>),
        flags: u64,
        (started, mut first): (u64, bool),
        mut after: impl Answered,
    ) -> Result<(u64, u64, u64), Error> {
        // Crash mode (test tooling): the exit count at which this VMM panics.
        #[cfg(not(feature = "test-modes"))]
        let _ = flags; // the crash modes are test tooling
        #[cfg(feature = "test-modes")]
        let crash_at = test_modes::crash_at(flags);
        // The VM owning the console input gets it from a second thread, as messages on
        // the exit endpoint; bytes its UART cannot take yet wait in `pending`.
        let input = input::start(&input::SLOTS, EXIT_EP, PRIORITY).unwrap_or_else(|e| {
            say!("no console input: {}", e.name());
            false
        });
        let mut pending = PendingInput::new();
        // A vCPU halted with no timer edge ahead: its reply waits, unsent, in the Reply
        // object until input raises an interrupt (`wake_parked`).
        let mut parked = false;
        // The loop reads only the label of what arrives; a kernel notice is decoded.
        let mut next = recv_regs()?;
        let mut legs = Legs::default();
        // With several vCPUs each exit names its vCPU by the endpoint's badge.
        let smp = vm.vcpus() > 1;
        loop {
            // Every `Legs::SAMPLE`th exit is timed: the VMM does not time itself on
            // every exit.
            let woke = legs.due().then(rdtsc);
            if MsgInfo::raw_label(next.info) != vm::EXIT_LABEL {
                let r = next.received();
                if let Some(chunk) = input::decode(r.msg.info, r.msg.words) {
                    // One way: no reply is owed, and the vCPU's was given already (or
                    // waits in the Reply object, untouched by the kernel meanwhile).
                    pending.push(chunk.as_bytes());
                    offer_input(&mut vm, &mut pending);
                    if parked
                        && vcpu_page::reply_mut(page(0)).is_some_and(|r| wake_parked(&mut vm, r))
                    {
                        parked = false;
                        let _ = rt::ipc::send(input::SLOTS.parked, &Msg::default());
                    }
                    if smp {
                        // The vCPU the UART's interrupt went to may be halted in its
                        // guest: the one served last too.
                        let served = vm.platform().interrupt_pending();
                        kick(vm.take_kicks() | u32::from(served) << vm.served_vcpu());
                    }
                    next = recv_regs()?;
                    continue;
                }
                if kernel_stopped(&r) {
                    if let Some(r) = recorder.take() {
                        r.finish();
                    }
                    return Ok((stop::OTHER, 0, vm.stats().total_exits()));
                }
                next = recv_regs()?;
                continue;
            }
            // The exit is read and the reply built in place, in the vCPU state page (one
            // vCPU's is always the first: no badge to read on its hot path).
            let page = if smp {
                let Some(page) = serve_vcpu(&mut vm, next.badge) else {
                    return Ok((stop::OTHER, 0, vm.stats().total_exits()));
                };
                page
            } else {
                page(0)
            };
            let Some((msg, reply)) = vcpu_page::exit_and_reply(page) else {
                say!("malformed exit message");
                return Ok((stop::OTHER, 0, 0));
            };
            legs.exit(msg);
            // Input the UART refused earlier: offered before the exit, so an interrupt it
            // raises goes out with this reply.
            offer_input(&mut vm, &mut pending);
            answer_into(&mut vm, msg, core::mem::take(&mut first), reply);
            // Only an MMIO exit (an EPT violation or misconfiguration) leaves a notice.
            // (Reasons 48 and 49, adjacent: one comparison on every exit.)
            let ept = ExitReason::EptViolation as u32..=ExitReason::EptMisconfig as u32;
            if ept.contains(&msg.reason) {
                if let Some(notice) = vm.take_notice() {
                    say!("{notice}");
                }
            }
            if let Some(r) = &mut recorder {
                r.record(msg, reply);
            }
            if let Some(woke) = woke {
                legs.reply(msg, woke);
                // Checked on the sampled exits only, off the hot path.
                #[cfg(feature = "test-modes")]
                if vm.stats().total_exits() >= crash_at {
                    after.crashing();
                    panic!("crash mode: the VMM panics at exit {crash_at}, as the manifest asked");
                }
            }
            if let RunState::Stopped(why) = vm.run_state() {
                let exits = vm.stats().total_exits();
                let _ = rt::ipc::reply(&Msg::default());
                if let Some(r) = recorder.take() {
                    r.finish();
                }
                let ticks = msg.exit_tsc.wrapping_sub(started);
                say!("VM stopped: {why} after {exits} exits, {ticks} ticks from its start");
                say!("exits by reason: {}", vm.stats().by_reason());
                legs.print();
                return Ok(match why {
                    StopReason::GuestExit(code) => (stop::EXITED, code, exits),
                    StopReason::TripleFault => (stop::TRIPLE_FAULT, 0, exits),
                    StopReason::HaltedForever | StopReason::PowerOff => (stop::POWER_OFF, 0, exits),
                    _ => (stop::OTHER, 0, exits),
                });
            }
            after.answered(&vm, msg);
            if smp {
                after_vcpu_exit(&mut vm);
            }
            // Halted with no timer edge ahead: only input can wake the guest, so its
            // reply waits rather than stopping the vCPU.
            if input
                && vm.run_state() == RunState::Halted
                && invoke(input::SLOTS.parked, Invocation::ReplySave, &[]).is_ok()
            {
                parked = true;
                next = recv_regs()?;
                continue;
            }
            next = ipc_regs(Syscall::ReplyRecv, EXIT_EP, &Msg::default(), 0, 0);
            if next.status != 0 {
                let status = next.status;
                say!(
                    "the kernel refused the reply: error {status}, batch error {}, field {:#x}",
                    next.words[0],
                    next.words[1]
                );
                if let Some(r) = recorder.take() {
                    r.finish();
                }
                return Ok((stop::OTHER, 0, vm.stats().total_exits()));
            }
        }
    }

    /// The start flags only a VMM built with test modes serves.
    #[cfg(not(feature = "test-modes"))]
    const TEST_FLAGS: u64 = vmm_flags::HOSTILE
        | vmm_flags::MUTATE
        | vmm_flags::TRACE
        | vmm_flags::CRASH
        | vmm_flags::CRASH_ON_HYPERCALL;

    /// Take up the VM a crashed VMM served (`vmm::flags::RESTARTED`): its objects are in
    /// this CNode, its state in the saved-state region. Returns the VM and the region,
    /// and says how many exits the state is from.
    fn restart(ram_bits: u8) -> Result<(ServedVm, StateRegion<ServedVm>), Error> {
        // The crashed VMM's console-input thread, if it had one, still runs in the dead
        // address space: it goes first, with its stack and the Reply object (a vCPU
        // parked there runs again and halts again).
        let step = |what: &'static str| {
            move |e: Error| {
                say!("cannot take up the VM: {what}: {}", e.name());
                e
            }
        };
        for s in [input::SLOTS.tcb, input::SLOTS.stack, input::SLOTS.parked] {
            match invoke(slot::CNODE, Invocation::CNodeDelete, &[s]) {
                // An empty slot: the VM had no console input.
                Ok(_) | Err(Error::InvalidCapability) => {}
                Err(e) => return Err(step("deleting the crashed VMM's input thread")(e)),
            }
        }
        map_frame(MSG_FRAME, MSG_VA, map::WRITE).map_err(step("mapping the message frame"))?;
        if !(vmm::RAM_BITS_MIN..=vmm::RAM_BITS_MAX).contains(&ram_bits) {
            return Err(step("the start argument")(Error::InvalidArgument));
        }
        for i in 0..(1u64 << ram_bits) / RAM_FRAME {
            map_frame(RAM_OWN + i, RAM_VA + i * RAM_FRAME, map::WRITE)
                .map_err(step("mapping guest RAM"))?;
        }
        device_process().map_err(step("reaching the device process"))?;
        let mut region =
            StateRegion::attach(STATE_FIRST).map_err(step("mapping the saved state"))?;
        match region.take() {
            Ok((vm, commits)) => {
                say!("vmm restarted: took up the state committed after exit {commits}");
                Ok((vm, region))
            }
            Err(e) => {
                say!("the saved state is refused ({e}): the VM stops");
                Err(Error::StartRefused)
            }
        }
    }

    /// The VMM's life: build, serve (or attack), report; or, after a crash, take up the
    /// VM and serve on.
    pub fn run(arg: u64) -> u64 {
        rt::console::attach(slot::CONSOLE);
        if let Err(e) = map_description() {
            say!("no description frame: {}", e.name());
        }
        let (size, ram_bits, mode, flags) = vmm::split_start_arg(arg);
        if flags & vmm_flags::RESTARTED != 0 {
            let outcome = match restart(ram_bits) {
                Ok((vm, region)) => {
                    let after = Restartable::new(region, flags);
                    serve((vm, None), flags, (rdtsc(), false), after).unwrap_or((stop::OTHER, 0, 0))
                }
                // `restart` said why.
                Err(_) => (stop::REFUSED, 0, 0),
            };
            return report(outcome);
        }
        let outcome = match build(size, ram_bits, mode, flags) {
            #[cfg(feature = "test-modes")]
            Ok(Built { ram, entry, .. }) if flags & vmm_flags::HOSTILE != 0 => {
                test_modes::attack(ram, mode, entry).unwrap_or((stop::OTHER, 0, 0))
            }
            #[cfg(feature = "test-modes")]
            Ok(Built { ram, entry, .. }) if flags & vmm_flags::MUTATE != 0 => {
                test_modes::mutated(ram, mode, entry).unwrap_or((stop::OTHER, 0, 0))
            }
            #[cfg(not(feature = "test-modes"))]
            Ok(_) if flags & TEST_FLAGS != 0 => {
                say!(
                    "this VMM is built without test modes: it cannot run a hostile, mutating, traced or crashing VM (flags {flags:#x})"
                );
                (stop::OTHER, 0, 0)
            }
            Ok(Built { ram, unix_time, devices, vcpus, started, .. }) => {
                let uart_model = match device_process() {
                    Ok(true) => Some(device_link as vmm_server::devices::remote::Link),
                    Ok(false) => None,
                    Err(e) => {
                        say!("cannot reach the device process: {}", e.name());
                        None
                    }
                };
                let mut config = VmConfig {
                    clock: host_clock(),
                    unix_time,
                    devices,
                    uart_model,
                    vcpus,
                    ..vmm_server::serve::config(mode)
                };
                if flags & vmm_flags::LINUX != 0 {
                    // MWAIT returns at once under this VMM: a guest idling with it would
                    // spin, so Linux is offered HLT only.
                    config.cpuid.allow_mwait = false;
                }
                let region = if flags & vmm_flags::RESTARTABLE != 0 {
                    match StateRegion::create(STATE_FIRST) {
                        Ok(r) => Some(Restartable::new(r, flags)),
                        Err(e) => {
                            say!("no saved-state region: {}", e.name());
                            return report((stop::REFUSED, 0, 0));
                        }
                    }
                } else {
                    None
                };
                new_vm(ram, (mode, &config), flags)
                    .and_then(|vm| match region {
                        Some(after) => serve(vm, flags, (started, true), after),
                        None => serve(vm, flags, (started, true), ()),
                    })
                    .unwrap_or((stop::OTHER, 0, 0))
            }
            // No VT-x, or none this guest can run on (the VMM said why).
            Err(Error::NotSupported | Error::StartRefused) => (stop::NOT_SUPPORTED, 0, 0),
            Err(e) => {
                say!("cannot build the VM: {}", e.name());
                (stop::REFUSED, 0, 0)
            }
        };
        report(outcome)
    }

    /// Report how the VM ended, `(stop reason, exit code, exits)`, to the root task.
    fn report((why, code, exits): (u64, u64, u64)) -> u64 {
        let _ = rt::ipc::call(slot::REPORT, &Msg::new(REPORT_LABEL, &[code, exits, why]));
        code
    }
}

#[cfg(target_os = "none")]
fn start(arg: u64) -> u64 {
    process::run(arg)
}

#[cfg(not(target_os = "none"))]
fn start(_: u64) -> u64 {
    0
}
