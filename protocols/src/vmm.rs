//! How the root task starts a VMM process: the capabilities in its CSpace and its start
//! registers. One VMM process runs one VM.

use crate::devices::table::{DeviceTable, TableError};
use crate::devices::DeviceSet;
use crate::manifest::MAX_NAME;

/// Slots of a VMM process's CSpace.
pub mod slot {
    /// Its own CNode.
    pub const CNODE: u64 = 1;
    /// Its own address space.
    pub const VSPACE: u64 = 2;
    /// Untyped memory for the VM's objects (VCpu, guest space, exit endpoint, message
    /// frame): 2^[`super::OBJECT_BITS`] bytes.
    pub const UNTYPED: u64 = 3;
    /// An endpoint to the root task for the final report (badged by the root task).
    pub const REPORT: u64 = 4;
    /// A badged endpoint of the console driver for the VMM's log and the guest's UART
    /// output; without one the VMM falls back to the kernel's debug console.
    pub const CONSOLE: u64 = 5;
    /// An `IoPorts` capability for the ports the guest reaches without exiting (the
    /// manifest's `pass_ports`); empty when the VM has none.
    pub const PASS_PORTS: u64 = 6;
    /// Untyped memory of exactly the VM's RAM (2^`ram bits` of the start register), 2 MiB
    /// aligned: the VMM retypes it into 2 MiB frames.
    pub const RAM_UNTYPED: u64 = 7;
    /// The VM's [`super::VmDescription`], one read-only frame.
    pub const DESCRIPTION: u64 = 8;
    /// The VM that owns the console input: the notification the console driver signals
    /// when input arrives (read right; empty for every other VM). Its [`CONSOLE`] copy
    /// then carries `console::INPUT_BADGE`.
    pub const CONSOLE_INPUT: u64 = 9;
    /// The VM whose device runs out of process (the manifest's device `process`): the
    /// endpoint its device process serves (call right; `crate::device_model`). Empty for
    /// every other VM: then every device runs in the VMM.
    pub const DEVICE_ENDPOINT: u64 = 10;
    /// The notification that device process signals when its line changes without an
    /// access (read right).
    pub const DEVICE_LINE: u64 = 11;
    /// The page shared with that device process for string I/O (read and write).
    pub const DEVICE_PAGE: u64 = 12;
    /// The first of the guest image's frames (read-only), one per page, in order; a Linux
    /// VM's initramfs frames follow the kernel's.
    pub const FIRST_IMAGE_FRAME: u64 = 16;
}

/// log2 of a VMM process's CNode slot count.
pub const CNODE_RADIX: u8 = 13;
/// The most vCPUs one VM has (the manifest's `vcpus`).
pub const MAX_VCPUS: u8 = 8;
/// The most image pages a VMM takes (a Linux VM's kernel and initramfs together).
pub const MAX_IMAGE_PAGES: u64 = 6144;

/// log2 of the untyped memory for a VM's objects (slot [`slot::UNTYPED`]).
pub const OBJECT_BITS: u8 = 19;
/// Smallest and largest VM RAM, as log2 of its bytes: one 2 MiB frame .. 1 GiB.
pub const RAM_BITS_MIN: u8 = 21;
/// See [`RAM_BITS_MIN`].
pub const RAM_BITS_MAX: u8 = 30;

// Start register `rdi`: the guest image's size in bytes (bits 39:0), log2 of the VM's
// RAM in bytes (bits 47:40), the guest's mode (`object::vcpu_mode`, bits 55:48) and
// [`flags`] (bits 63:56).

/// The start register of a VMM: image size, RAM, mode and flags.
pub const fn start_arg(image_size: u64, ram_bits: u8, mode: u64, flags: u64) -> u64 {
    (image_size & 0xff_ffff_ffff)
        | ((ram_bits as u64) << 40)
        | ((mode & 0xff) << 48)
        | (flags << 56)
}

/// The parts of a VMM's start register: `(image size, ram bits, mode, flags)`.
pub const fn split_start_arg(arg: u64) -> (u64, u8, u64, u64) {
    (arg & 0xff_ffff_ffff, (arg >> 40) as u8, (arg >> 48) & 0xff, arg >> 56)
}

/// Flags in the start register.
pub mod flags {
    /// Hostile mode: instead of serving the guest, answer its exits with batches that
    /// try to take over the host (host state, pointers, kernel-owned control bits) and
    /// check that the kernel refuses each one, naming the field. Reports the number of
    /// attempts that were not refused as the guest exit code.
    pub const HOSTILE: u64 = 1 << 0;
    /// Mutating mode: serve the guest, but answer its first exits (a fixed number) with
    /// seeded random mutations of the real reply (writes of any field, forbidden ones
    /// included; random flags, injections and GPR masks; damaged wire words), starting the
    /// vCPU again after each refusal. Prints how many the kernel accepted and refused, and
    /// reports the number it accepted although they name a field no VMM may write (or do
    /// not decode) as the guest exit code.
    pub const MUTATE: u64 = 1 << 1;
    /// Trace mode: serve the guest and print its exits and the replies as `trace:` lines
    /// (`vmm_server::trace`), for `cargo xtask trace`.
    pub const TRACE: u64 = 1 << 2;
    /// The guest is a Linux kernel (a bzImage), booted by the Linux boot protocol with
    /// the command line in the [`super::VmDescription`].
    pub const LINUX: u64 = 1 << 3;
    /// Crash mode (test tooling): the VMM panics while serving its 64th exit, in the
    /// middle of the guest's work, so the root task's handling of a crashed VMM can be
    /// seen. A [`RESTARTABLE`] one scribbles over its saved state first, so that the
    /// restart must refuse the state and stop the VM.
    pub const CRASH: u64 = 1 << 4;
    /// Crash on request (test tooling, with [`RESTARTABLE`], which it tests): the VMM
    /// panics while serving the guest's `CRASH_VMM` hypercall (function 9), at the point
    /// in its output the guest chose, before it commits that exit.
    pub const CRASH_ON_HYPERCALL: u64 = 1 << 5;
    /// Restartable: after each exit it has answered, the VMM commits its VM's state to a
    /// region in its CNode, for a VMM started with [`RESTARTED`] to take up.
    pub const RESTARTABLE: u64 = 1 << 6;
    /// Restarted: the VMM before this one crashed. The CNode is the one it had, with
    /// every object it made (the VCpu, guest space, guest RAM, exit endpoint, the saved
    /// state); the VMM attaches to them instead of building the VM, takes up the state
    /// the last one committed (refusing one that fails its check), and serves on.
    pub const RESTARTED: u64 = 1 << 7;
}

/// A civil date and time (the host's CMOS clock, as the root task read it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HostDate {
    /// Full year.
    pub year: u16,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59.
    pub second: u8,
    /// 1 when read; 0 when the host's clock could not be read.
    pub valid: u8,
}

/// Every VM's description, in the frame at [`slot::DESCRIPTION`]: its name from the
/// manifest (which the VMM's log lines start with), the host's date, for a Linux VM
/// the initramfs's size (its frames follow the kernel's) and the command line, and the
/// VM's devices (the VMM checks the table again before it builds anything from it).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VmDescription {
    /// [`VmDescription::MAGIC`].
    pub magic: u64,
    /// The initramfs's size in bytes (0: none).
    pub initrd_size: u64,
    /// The command line's length in bytes.
    pub cmdline_len: u64,
    /// The host's date and time when the VM was made, for its real-time clock.
    pub host_date: HostDate,
    /// The name's length in bytes.
    pub name_len: u64,
    /// The VM's name (the first `name_len` bytes).
    pub name: [u8; MAX_NAME],
    /// The command line (the first `cmdline_len` bytes).
    pub cmdline: [u8; VmDescription::CMDLINE_ROOM],
    /// The VM's devices.
    pub devices: DeviceTable,
    /// Its vCPUs (1..=[`MAX_VCPUS`]; the VMM refuses other counts).
    pub vcpus: u64,
    /// The CPU the VMM runs on, and how many the machine has online: vCPU `i` goes on
    /// CPU `(cpu + i) % cpus`.
    pub cpu: u64,
    /// See `cpu`.
    pub cpus: u64,
}

impl VmDescription {
    /// "vmdesc\0\0".
    pub const MAGIC: u64 = u64::from_le_bytes(*b"vmdesc\0\0");
    /// Room for the command line: x86 Linux's `COMMAND_LINE_SIZE`.
    pub const CMDLINE_ROOM: usize = crate::manifest::MAX_CMDLINE + 1;

    /// A description of the VM `name` (cut at [`MAX_NAME`]) that boots `cmdline` (cut at
    /// [`Self::CMDLINE_ROOM`]; empty for a test guest) with an initramfs of `initrd_size`
    /// bytes, on the standard devices ([`Self::with_devices`] gives others).
    pub fn new(name: &str, cmdline: &str, initrd_size: u64, host_date: HostDate) -> Self {
        let mut d = Self {
            magic: Self::MAGIC,
            initrd_size,
            cmdline_len: 0,
            host_date,
            name_len: 0,
            name: [0; MAX_NAME],
            cmdline: [0; Self::CMDLINE_ROOM],
            devices: DeviceTable::new(&DeviceSet::STANDARD),
            vcpus: 1,
            cpu: 0,
            cpus: 1,
        };
        let len = name.len().min(MAX_NAME);
        d.name[..len].copy_from_slice(&name.as_bytes()[..len]);
        d.name_len = len as u64;
        let len = cmdline.len().min(Self::CMDLINE_ROOM);
        d.cmdline[..len].copy_from_slice(&cmdline.as_bytes()[..len]);
        d.cmdline_len = len as u64;
        d
    }

    /// The same description with the devices of `set`.
    pub fn with_devices(mut self, set: &DeviceSet) -> Self {
        self.devices = DeviceTable::new(set);
        self
    }

    /// The same description with `vcpus` vCPUs, the VMM on CPU `cpu` of `cpus` online.
    pub fn with_vcpus(mut self, vcpus: u8, cpu: u64, cpus: u64) -> Self {
        (self.vcpus, self.cpu, self.cpus) = (vcpus.into(), cpu, cpus);
        self
    }

    /// The VM's devices, checked (the description is input to the VMM).
    pub fn devices(&self) -> Result<DeviceSet, TableError> {
        self.devices.decode()
    }

    /// The VM's name, if the description is well formed.
    pub fn name(&self) -> Option<&str> {
        self.text(&self.name, self.name_len)
    }

    /// The command line, if the description is well formed.
    pub fn cmdline(&self) -> Option<&str> {
        self.text(&self.cmdline, self.cmdline_len)
    }

    fn text<'a>(&self, room: &'a [u8], len: u64) -> Option<&'a str> {
        if self.magic != Self::MAGIC {
            return None;
        }
        core::str::from_utf8(room.get(..usize::try_from(len).ok()?)?).ok()
    }
}

const _: () = assert!(size_of::<VmDescription>() <= 4096);

/// Label of the report message: words `[guest exit code, exits handled, stop reason]`.
pub const REPORT_LABEL: u64 = 0x7265_7074; // "rept"

/// Label base of console input a VMM's input thread forwards to its own exit endpoint
/// (one-way, no reply owed): the byte count (0..=`console::MAX_WRITE`) is added, the bytes
/// packed as in `console::bytes_message`. Distinct from the kernel's exit and failure
/// labels ("vm" + "ex"/"fl"), which the serving loop tells apart by label alone.
pub const INPUT_LABEL: u64 = 0x7669_6e00; // "vin\0"

/// Stop reasons in the report.
pub mod stop {
    /// The guest asked to exit (hypercall) with the reported code.
    pub const EXITED: u64 = 0;
    /// The guest triple-faulted; only its VM stopped.
    pub const TRIPLE_FAULT: u64 = 1;
    /// The VMM stopped the VM for another reason (see its log).
    pub const OTHER: u64 = 2;
    /// The kernel refused to run the VM (see the VMM's log).
    pub const NOT_SUPPORTED: u64 = 3;
    /// The guest powered off: it halted with interrupts disabled.
    pub const POWER_OFF: u64 = 4;
    /// The VMM refused to build the VM from what it was given (see its log).
    pub const REFUSED: u64 = 5;
    /// Never sent by a VMM: the root task's record of a VMM that faulted or exited before
    /// it reported.
    pub const VMM_CRASHED: u64 = 6;
}

#[cfg(test)]
mod tests {
    use super::VmDescription;

    #[test]
    fn a_description_carries_the_name_and_command_line() {
        let d =
            VmDescription::new("linux", "console=ttyS0 quiet", 4096, super::HostDate::default());
        assert_eq!((d.cmdline(), d.initrd_size), (Some("console=ttyS0 quiet"), 4096));
        assert_eq!(d.name(), Some("linux"));
        let bytes = bytemuck::bytes_of(&d);
        let back: VmDescription = bytemuck::pod_read_unaligned(bytes);
        assert_eq!((back.name(), back.cmdline()), (Some("linux"), Some("console=ttyS0 quiet")));
        let mut bad = d;
        bad.magic = 0;
        assert_eq!((bad.name(), bad.cmdline()), (None, None), "an empty frame is no description");
        bad = d;
        bad.cmdline_len = 5000;
        assert_eq!(bad.cmdline(), None, "a length past the room");
        bad = d;
        bad.name_len = 33;
        assert_eq!(bad.name(), None, "a name past the room");
        let guest = VmDescription::new("guest64", "", 0, super::HostDate::default());
        assert_eq!((guest.name(), guest.cmdline()), (Some("guest64"), Some("")));
        use crate::devices::{DeviceSet, Kind};
        assert_eq!(guest.devices(), Ok(DeviceSet::STANDARD));
        let fewer = DeviceSet::STANDARD.without(Kind::I8042);
        assert_eq!(guest.with_devices(&fewer).devices(), Ok(fewer));
    }

    /// The offsets docs/abi.md gives.
    #[test]
    fn the_description_layout_is_the_documented_one() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(VmDescription, initrd_size), 8);
        assert_eq!(offset_of!(VmDescription, cmdline_len), 16);
        assert_eq!(offset_of!(VmDescription, host_date), 24);
        assert_eq!(offset_of!(super::HostDate, valid), 7);
        assert_eq!(offset_of!(VmDescription, name_len), 32);
        assert_eq!(offset_of!(VmDescription, name), 40);
        assert_eq!(offset_of!(VmDescription, cmdline), 72);
        assert_eq!(offset_of!(VmDescription, devices), 72 + 2048);
        assert_eq!(offset_of!(VmDescription, vcpus), 72 + 2048 + 248);
        assert_eq!(offset_of!(VmDescription, cpu), 72 + 2048 + 256);
        assert_eq!(offset_of!(VmDescription, cpus), 72 + 2048 + 264);
        assert_eq!(size_of::<VmDescription>(), 72 + 2048 + 272);
    }
}
