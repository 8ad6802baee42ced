//! Checking and encoding the system manifest: TOML written by people under `images/`
//! becomes the postcard-encoded boot module `manifest` (`protocols::manifest`). Every
//! refusal names the file and the entry (and the capability, for a process's).

mod devices;
mod process;

use crate::{err, Result};
use protocols::manifest::{
    Expect, GuestMode, LinuxBoot, Manifest, Object, ObjectKind, VmEntry, MAX_ENCODED, MAX_OBJECTS,
    MAX_PROCESSES,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    notifications: Vec<String>,
    #[serde(default)]
    process: Vec<process::Process>,
    #[serde(default)]
    vm: Vec<Vm>,
    /// The build tool's own key, never encoded: what each image built from this manifest
    /// is for and what a run of it must show.
    #[serde(default)]
    images: BTreeMap<String, ImageInfo>,
}

/// `[images.NAME]`: an image built from this manifest, as `cargo xtask images` lists it
/// and `cargo xtask run` judges it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// What the image is for.
    pub about: String,
    /// What a run must show: `"pass"`, or `"refused: TEXT"` (a clean failing exit whose
    /// serial log holds TEXT).
    pub expect: String,
}

/// Just the `[images.*]` tables of a manifest, whatever else it holds.
#[derive(Deserialize)]
struct ImagesOnly {
    #[serde(default)]
    images: BTreeMap<String, ImageInfo>,
}

/// The `[images.*]` tables of the manifest `text` (from `path`, for messages), each
/// expectation checked.
pub fn images(path: &Path, text: &str) -> Result<BTreeMap<String, ImageInfo>> {
    let file: ImagesOnly = toml::from_str(text).map_err(|e| err!("{}: {e}", path.display()))?;
    for (name, info) in &file.images {
        crate::image::Expect::parse(&info.expect)
            .map_err(|e| err!("{}: images.{name}: {e}", path.display()))?;
    }
    Ok(file.images)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vm {
    name: String,
    vmm: String,
    guest: String,
    /// `"test"` (the default: an ELF test guest in `mode`) or `"linux"` (a bzImage).
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    /// A Linux VM's initramfs module.
    #[serde(default)]
    initrd: Option<String>,
    /// A Linux VM's kernel command line.
    #[serde(default)]
    cmdline: Option<String>,
    memory_mib: u64,
    priority: u8,
    /// The CPU it runs on (CPU 0 where that one is not online).
    #[serde(default)]
    cpu: u8,
    #[serde(default)]
    phase: u8,
    #[serde(default)]
    hostile: bool,
    #[serde(default)]
    mutate: bool,
    #[serde(default)]
    trace: bool,
    /// Test tooling: the VMM panics at its 64th exit (`vmm::flags::CRASH`).
    #[serde(default)]
    crash: bool,
    /// Test tooling: the VMM panics at the guest's `CRASH_VMM` hypercall
    /// (`vmm::flags::CRASH_ON_HYPERCALL`); only with `restart`, which it tests.
    #[serde(default)]
    crash_on_hypercall: bool,
    /// Start a fresh VMM on the same VM when this one crashes.
    #[serde(default)]
    restart: bool,
    expect: String,
    #[serde(default)]
    pass_ports: Option<[u16; 2]>,
    /// This VM owns the console input (at most one VM).
    #[serde(default)]
    console_input: bool,
    /// Its devices; without the key, the standard PC.
    #[serde(default)]
    devices: Option<Vec<devices::Entry>>,
    /// Its vCPUs (1 without the key).
    #[serde(default = "one")]
    vcpus: u8,
}

fn one() -> u8 {
    1
}

/// The guest's start mode and, for a Linux VM, how it boots. A test guest names its
/// mode and has no Linux keys; a Linux VM starts at the kernel's 64-bit entry, so it
/// names no mode.
fn kind<'a>(vm: &'a Vm, modules: &[&str]) -> Result<(GuestMode, Option<LinuxBoot<'a>>)> {
    match vm.kind.as_deref().unwrap_or("test") {
        "test" => {
            for (key, given) in [("initrd", vm.initrd.is_some()), ("cmdline", vm.cmdline.is_some())]
            {
                if given {
                    return Err(err!("vm {:?}: {key} is only for kind = \"linux\"", vm.name));
                }
            }
            Ok((mode(vm)?, None))
        }
        "linux" => {
            if let Some(mode) = &vm.mode {
                return Err(err!(
                    "vm {:?}: mode {mode:?} does not apply to kind = \"linux\" (the kernel's \
                     64-bit entry)",
                    vm.name
                ));
            }
            let cmdline = vm.cmdline.as_deref().ok_or_else(|| {
                err!("vm {:?}: kind = \"linux\" needs a cmdline (e.g. \"console=ttyS0\")", vm.name)
            })?;
            if let Some(m) = vm.initrd.as_deref().filter(|m| !modules.contains(m)) {
                return Err(err!(
                    "vm {:?}: unknown initrd module {m:?} (the image has: {})",
                    vm.name,
                    modules.join(", ")
                ));
            }
            Ok((GuestMode::Long64, Some(LinuxBoot { initrd: vm.initrd.as_deref(), cmdline })))
        }
        other => Err(err!("vm {:?}: unknown kind {other:?} (test, linux)", vm.name)),
    }
}

fn mode(vm: &Vm) -> Result<GuestMode> {
    let Some(mode) = vm.mode.as_deref() else {
        return Err(err!("vm {:?}: needs a mode (long64, protected32, real)", vm.name));
    };
    Ok(match mode {
        "long64" => GuestMode::Long64,
        "protected32" => GuestMode::Protected32,
        "real" => GuestMode::Real,
        other => {
            return Err(err!(
                "vm {:?}: unknown mode {other:?} (long64, protected32, real)",
                vm.name
            ))
        }
    })
}

fn expect(vm: &Vm) -> Result<Expect> {
    match vm.expect.as_str() {
        "triple fault" => return Ok(Expect::TripleFault),
        "power off" => return Ok(Expect::PowerOff),
        "refused" => return Ok(Expect::Refused),
        "vmm crashed" => return Ok(Expect::VmmCrashed),
        _ => {}
    }
    vm.expect.strip_prefix("exit ").and_then(|n| n.parse().ok()).map(Expect::Exit).ok_or_else(
        || {
            err!(
                "vm {:?}: expect {:?} is none of \"exit N\", \"triple fault\", \"power off\", \"refused\", \"vmm crashed\"",
                vm.name,
                vm.expect
            )
        },
    )
}

fn memory_bits(vm: &Vm) -> Result<u8> {
    let mib = vm.memory_mib;
    if !mib.is_power_of_two() || !(2..=1024).contains(&mib) {
        return Err(err!(
            "vm {:?}: memory_mib {mib} (the VM's RAM) must be a power of two in 2..=1024",
            vm.name
        ));
    }
    Ok(20 + mib.trailing_zeros() as u8)
}

/// Parse, check and encode `text` (from `path`, for messages); `modules` are the boot
/// modules the image will carry.
pub fn encode(path: &Path, text: &str, modules: &[&str]) -> Result<Vec<u8>> {
    let at = |e: crate::Error| err!("{}: {e}", path.display());
    let file: File = toml::from_str(text).map_err(|e| err!("{}: {e}", path.display()))?;
    for (name, info) in &file.images {
        crate::image::Expect::parse(&info.expect).map_err(|e| at(err!("images.{name}: {e}")))?;
    }
    let mut manifest = Manifest {
        vms: heapless::Vec::new(),
        objects: heapless::Vec::new(),
        processes: heapless::Vec::new(),
    };
    let endpoints = file.endpoints.iter().map(|n| (n, ObjectKind::Endpoint));
    let notifications = file.notifications.iter().map(|n| (n, ObjectKind::Notification));
    for (name, kind) in endpoints.chain(notifications) {
        manifest
            .objects
            .push(Object { name, kind })
            .map_err(|_| at(err!("more than {MAX_OBJECTS} endpoints and notifications")))?;
    }
    for p in &file.process {
        let entry = process::entry(&manifest, p, modules).map_err(at)?;
        manifest
            .processes
            .push(entry)
            .map_err(|_| at(err!("more than {MAX_PROCESSES} processes")))?;
    }
    for vm in &file.vm {
        for (what, module) in [("vmm", &vm.vmm), ("guest", &vm.guest)] {
            if !modules.contains(&module.as_str()) {
                return Err(at(err!(
                    "vm {:?}: unknown {what} module {module:?} (the image has: {})",
                    vm.name,
                    modules.join(", ")
                )));
            }
        }
        if vm.crash_on_hypercall && !vm.restart {
            return Err(at(err!(
                "vm {:?}: crash_on_hypercall tests the restart of a VMM: it needs restart = true",
                vm.name
            )));
        }
        let vmms = crate::image::vmm_modules()?;
        if !vmms.contains(&vm.vmm.as_str()) {
            return Err(at(err!(
                "vm {:?}: module {:?} is not a VMM: its crate does not declare [package.metadata.system] role = \"vmm\" (the VMMs: {})",
                vm.name,
                vm.vmm,
                vmms.join(", ")
            )));
        }
        let (mode, linux) = kind(vm, modules).map_err(at)?;
        let device_process = match &vm.devices {
            Some(d) => {
                devices::process(&vm.name, d, &crate::image::device_model_modules()?).map_err(at)?
            }
            None => None,
        };
        if let Some(p) = device_process.filter(|p| !modules.contains(&p.module)) {
            return Err(at(err!(
                "vm {:?}: device {}: unknown module {:?} (the image has: {})",
                vm.name,
                p.kind.name(),
                p.module,
                modules.join(", ")
            )));
        }
        let entry = VmEntry {
            name: &vm.name,
            vmm: &vm.vmm,
            guest: &vm.guest,
            mode,
            memory_bits: memory_bits(vm).map_err(at)?,
            priority: vm.priority,
            cpu: vm.cpu,
            phase: vm.phase,
            hostile: vm.hostile,
            mutate: vm.mutate,
            trace: vm.trace,
            crash: vm.crash,
            crash_on_hypercall: vm.crash_on_hypercall,
            restart: vm.restart,
            expect: expect(vm).map_err(at)?,
            pass_ports: vm.pass_ports.map(|[first, last]| (first, last)),
            linux,
            console_input: vm.console_input,
            devices: vm
                .devices
                .as_deref()
                .map(|d| devices::set(&vm.name, d))
                .transpose()
                .map_err(at)?,
            device_process,
            vcpus: vm.vcpus,
        };
        if let Some(why) = entry.vcpus_refused() {
            return Err(at(err!("vm {:?}: vcpus = {}: {why}", vm.name, vm.vcpus)));
        }
        manifest
            .vms
            .push(entry)
            .map_err(|_| at(err!("more than {} VMs", protocols::manifest::MAX_VMS)))?;
    }
    manifest.check().map_err(|e| at(err!("{e}")))?;
    let bytes = postcard::to_allocvec(&manifest).map_err(|e| at(err!("cannot encode: {e}")))?;
    if bytes.len() > MAX_ENCODED {
        return Err(at(err!("the encoded manifest is {} bytes, over {MAX_ENCODED}", bytes.len())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::encode;
    use protocols::manifest::{Expect, GuestMode, Manifest};
    use std::path::PathBuf;

    fn images() -> PathBuf {
        crate::root().join("images")
    }

    #[test]
    fn the_default_manifest_encodes_and_decodes() {
        let path = images().join("default.toml");
        let bytes = encode(
            &path,
            &std::fs::read_to_string(&path).unwrap(),
            &crate::image::modules().unwrap(),
        )
        .unwrap();
        let m = Manifest::decode(&bytes).unwrap();
        assert_eq!(m.vms.len(), 11);
        assert_eq!(m.vms[2].mode, GuestMode::Real);
        assert_eq!(m.vms[3].expect, Expect::TripleFault);
        assert!(m.vms[4].hostile && !m.vms[4].mutate);
        assert!(m.vms[5].mutate && !m.vms[5].hostile);
        assert_eq!(m.vms[6].phase, 1);
        assert_eq!(m.vms[0].memory_bits, 22);
        assert!(m.vms.iter().all(|v| !v.trace), "the default image prints no trace");
        assert_eq!(m.vms[7].pass_ports, Some((0x80, 0x80)));
        assert_eq!(m.vms[8].memory_bits, 26, "a 64 MiB VM");
        assert!(m.vms[9].crash && m.vms[9].expect == Expect::VmmCrashed);
        assert!(m.vms[..9].iter().all(|v| !v.crash));
    }

    #[test]
    fn every_image_manifest_encodes() {
        for image in crate::image::IMAGES {
            let path = images().join(image.manifest);
            let text = std::fs::read_to_string(&path).unwrap();
            let bytes = encode(&path, &text, &image.modules().unwrap()).unwrap();
            let m = Manifest::decode(&bytes).unwrap();
            let console = m.processes.iter().any(|p| p.module == "console");
            assert!(console, "{}: every image prints through a console driver", image.name);
        }
    }

    #[test]
    fn the_linux_manifest_encodes_its_kernel_initramfs_and_command_line() {
        let image = crate::image::find("linux").unwrap();
        let path = images().join(image.manifest);
        let text = std::fs::read_to_string(&path).unwrap();
        let bytes = encode(&path, &text, &image.modules().unwrap()).unwrap();
        let m = Manifest::decode(&bytes).unwrap();
        let vm = &m.vms[0];
        assert_eq!((vm.guest, vm.mode), (crate::linux::KERNEL_MODULE, GuestMode::Long64));
        let linux = vm.linux.unwrap();
        assert_eq!(linux.initrd, Some(crate::linux::INITRAMFS_MODULE));
        assert!(linux.cmdline.starts_with("console=ttyS0"), "{}", linux.cmdline);
        assert_eq!(vm.expect, Expect::PowerOff);
        // Without the image's Linux modules the kernel module is unknown.
        let e = encode(&path, &text, &crate::image::modules().unwrap()).unwrap_err().to_string();
        assert!(e.contains("unknown guest module \"linux_kernel\""), "{e}");
        // A Linux VM needs a command line; a test guest needs a mode.
        let no_cmdline = text.replace("cmdline = ", "# cmdline = ");
        let e = encode(&path, &no_cmdline, &image.modules().unwrap()).unwrap_err().to_string();
        assert!(e.contains("kind = \"linux\" needs a cmdline"), "{e}");
        let default = std::fs::read_to_string(images().join("default.toml")).unwrap();
        let e =
            encode(&path, &default.replacen("mode = ", "# mode = ", 1), &image.modules().unwrap())
                .unwrap_err()
                .to_string();
        assert!(e.contains("needs a mode"), "{e}");
    }

    #[test]
    fn the_mode_flags_are_read_and_default_to_off() {
        let text = |extra: &str| {
            format!(
                "[[vm]]\nname = \"a\"\nvmm = \"vmm\"\nguest = \"guest32\"\nmode = \"protected32\"\n\
                 memory_mib = 4\npriority = 1\nexpect = \"exit 0\"\n{extra}"
            )
        };
        let path = std::path::Path::new("flags.toml");
        let decode = |t: &str| {
            let bytes = encode(path, t, &crate::image::modules().unwrap()).unwrap();
            let m = Manifest::decode(&bytes).unwrap();
            let v = &m.vms[0];
            (v.hostile, v.mutate, v.trace)
        };
        assert_eq!(decode(&text("")), (false, false, false));
        assert_eq!(decode(&text("mutate = true\n")), (false, true, false));
        assert_eq!(decode(&text("trace = true\nhostile = true\n")), (true, false, true));
        let e = encode(path, &text("mutate = 1\n"), &crate::image::modules().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mutate"), "{e}");
    }

    #[test]
    fn each_bad_manifest_is_refused_naming_its_entry() {
        let cases = [
            (
                "unknown-guest.toml",
                "vm \"vm_missing\": unknown guest module \"guest_that_does_not_exist\"",
            ),
            ("duplicate-name.toml", "vm \"twin\": name used twice"),
            ("bad-mode.toml", "vm \"vm_mode\": unknown mode \"virtual8086\""),
            ("too-little-memory.toml", "vm \"vm_small\": memory_mib 1 (the VM's RAM) must be a power of two"),
            ("bad-expect.toml", "vm \"vm_expect\": expect \"finish somehow\""),
            (
                "crash-on-hypercall-without-restart.toml",
                "vm \"vm_crashing\": crash_on_hypercall tests the restart of a VMM: it needs \
                 restart = true",
            ),
            ("unknown-key.toml", "unknown field `priorty`"),
            ("priority-too-high.toml", "vm \"vm_greedy\": priority 255 is above 254"),
            ("pass-ports-of-the-pit.toml", "vm \"vm_timer\": pass_ports 0x40..=0x43 is reversed"),
            ("duplicate-object.toml", "named object \"bell\": name used twice"),
            (
                "linux-with-mode.toml",
                "vm \"vm_linux_mode\": mode \"long64\" does not apply to kind = \"linux\"",
            ),
            ("linux-cmdline-control.toml", "vm \"vm_linux_tab\": cmdline byte 13 is not printable"),
            (
                "linux-unknown-initrd.toml",
                "vm \"vm_linux_initrd\": unknown initrd module \"initramfs_that_does_not_exist\"",
            ),
            (
                "cmdline-on-test-guest.toml",
                "vm \"vm_test_cmdline\": cmdline is only for kind = \"linux\"",
            ),
            ("unknown-kind.toml", "vm \"vm_windows\": unknown kind \"windows\" (test, linux)"),
            (
                "console-input-twice.toml",
                "vm \"vm_second\": console_input is already taken by vm \"vm_first\"",
            ),
            (
                "console-input-unsignalled.toml",
                "vm \"vm_deaf\": console_input needs a notification named \"console_input\"",
            ),
            ("process-unknown-module.toml", "process \"ghost\": unknown module \"ghost_driver\""),
            (
                "vm-not-a-vmm.toml",
                "vm \"vm_fuzzed\": module \"fuzzer\" is not a VMM: its crate does not declare",
            ),
            ("process-duplicate-name.toml", "process \"twin\": name used twice"),
            (
                "process-priority-above-root.toml",
                "process \"greedy\": priority 256 is above the root task's (255)",
            ),
            ("process-bad-radix.toml", "process \"hoarder\": cnode_radix 15 is outside 2..=14"),
            (
                "process-bad-start.toml",
                "process \"sleeper\": start \"tomorrow\" is neither \"boot\" nor \"after vms\"",
            ),
            (
                "process-reserved-slot.toml",
                "process \"squatter\": cap in slot 2: slots 0 (empty), 1 (its CNode) and 2",
            ),
            (
                "process-slot-outside-cnode.toml",
                "process \"cramped\": cap in slot 4: outside its CNode of 2^2 slots",
            ),
            ("process-duplicate-slot.toml", "process \"crowded\": cap in slot 3: slot used twice"),
            (
                "process-unknown-endpoint.toml",
                "process \"lost\": cap in slot 3: no endpoint or notification \"consol\"",
            ),
            (
                "process-wrong-object-kind.toml",
                "process \"confused\": cap in slot 3: \"console\" is an endpoint, not a notification",
            ),
            (
                "process-copy-without-rights.toml",
                "process \"vague\": cap in slot 3: a copy of \"console\" must state its rights",
            ),
            (
                "process-unknown-right.toml",
                "process \"runner\": cap in slot 3: unknown right \"execute\"",
            ),
            (
                "process-fresh-with-badge.toml",
                "process \"badged\": cap in slot 3: an endpoint made for it alone has every right",
            ),
            ("process-unknown-cap-kind.toml", "unknown variant `frame`"),
            (
                "process-fault-not-an-endpoint.toml",
                "process \"faulty\": fault handler \"doorbell\" is no declared endpoint",
            ),
            (
                "process-untyped-too-big.toml",
                "process \"glutton\": cap in slot 3: untyped of 2^40 bytes is outside",
            ),
            (
                "process-ports-reversed.toml",
                "process \"backwards\": cap in slot 3: io ports 0x3ff..=0x3f8 are reversed",
            ),
            (
                "process-ports-of-the-pic.toml",
                "process \"meddler\": cap in slot 3: io ports 0x20..=0x21 are reversed or reach a \
                 port the kernel keeps",
            ),
            (
                "process-timer-irq.toml",
                "process \"ticker\": cap in slot 3: irq 0 is the kernel's (0 the timer",
            ),
            (
                "process-irq-out-of-range.toml",
                "process \"dreamer\": cap in slot 3: there is no irq 16 (lines 0..16)",
            ),
            (
                "devices-unknown-kind.toml",
                "vm \"vm_floppy\": device #2: unknown kind \"fdc82077\" (pic8259, lapic,",
            ),
            (
                "devices-kind-twice.toml",
                "vm \"vm_two_uarts\": device #3 (uart16550): listed twice",
            ),
            (
                "devices-port-overlap.toml",
                "vm \"vm_crowded_ports\": device uart16550: its ports overlap those of pit8254 \
                 (port 0x61)",
            ),
            (
                "devices-mmio-overlap.toml",
                "vm \"vm_crowded_mmio\": device ioapic: its mmio overlaps that of lapic (at \
                 0xfee00000)",
            ),
            (
                "devices-irq-conflict.toml",
                "vm \"vm_shared_line\": device uart16550: irq 8 is cmos_rtc's already",
            ),
            (
                "devices-uart-short-range.toml",
                "vm \"vm_short_uart\": device uart16550: ports 0x2f8..=0x2fb: it takes 8 ports \
                 from a multiple of 8",
            ),
            (
                "devices-fixed-moved.toml",
                "vm \"vm_moved_pit\": device pit8254: sits at its PC place and takes no ports",
            ),
            ("devices-uart-irq-0.toml", "vm \"vm_uart_irq0\": device uart16550: irq 0: it takes"),
            (
                "devices-ioapic-outside-hole.toml",
                "vm \"vm_low_ioapic\": device ioapic: mmio 0x100000..=0x100fff: it takes one \
                 aligned 4 KiB page",
            ),
            (
                "devices-without-pic.toml",
                "vm \"vm_no_pic\": the devices must include pic8259",
            ),
            (
                "devices-ioapic-without-acpi.toml",
                "vm \"vm_hidden_ioapic\": device ioapic needs acpi_pm",
            ),
            (
                "devices-behind-pass-ports.toml",
                "vm \"vm_passed_post\": device post_code: its ports overlap pass_ports \
                 0x80..=0x80",
            ),
            ("devices-unknown-key.toml", "unknown field `baud`"),
            (
                "device-process-not-a-model.toml",
                "vm \"vm_fuzzed_uart\": device uart16550: module \"fuzzer\" is not a device \
                 model: its crate does not declare [package.metadata.system] role = \
                 \"device-model\" (the device models: uart)",
            ),
            (
                "device-process-no-model.toml",
                "vm \"vm_pit_process\": device pit8254: cannot run out of process: no device \
                 model exists for its kind (only uart16550 has one)",
            ),
            (
                "process-irq-twice.toml",
                "process \"second\": cap in slot 5: irq 4 is given to process \"first\" already",
            ),
        ];
        let dir = images().join("bad-manifests");
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(files, cases.len(), "every file in {} has a case", dir.display());
        for (file, message) in cases {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let e =
                encode(&path, &text, &crate::image::modules().unwrap()).unwrap_err().to_string();
            assert!(e.contains(message), "{file}: {e}");
            assert!(e.starts_with(&path.display().to_string()), "{file}: names the file: {e}");
        }
    }
}
