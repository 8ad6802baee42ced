//! A VM that boots Linux: its `guest` module is a bzImage, booted by the Linux boot
//! protocol (the VMM's `linux_boot`), with an initramfs module and a kernel command line
//! from the manifest. The command line lives here, not in the image, so booting another
//! kernel or changing its console is a manifest edit.

use serde::{Deserialize, Serialize};

use super::{name_ok, MAX_NAME};

/// The longest command line: x86 Linux's `COMMAND_LINE_SIZE` (2048) less its NUL. The
/// kernel's own `cmdline_size` is checked again when the VMM loads it.
pub const MAX_CMDLINE: usize = 2047;

/// How a Linux VM boots (the `kind = "linux"` keys of a `[[vm]]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxBoot<'a> {
    /// The initramfs's boot module, if any.
    pub initrd: Option<&'a str>,
    /// The kernel command line.
    pub cmdline: &'a str,
}

/// Why a Linux VM's entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// The initramfs's module name is empty or too long.
    BadInitrdModule,
    /// The command line is longer than [`MAX_CMDLINE`].
    CmdlineTooLong {
        /// Its length.
        len: usize,
    },
    /// The command line holds a byte that is not printable ASCII (a NUL would end it
    /// early; a control character would reach the kernel's parser as is).
    CmdlineNotPrintable {
        /// The byte's offset.
        at: usize,
    },
}

impl core::fmt::Display for LinuxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadInitrdModule => {
                write!(f, "initrd module name empty or over {MAX_NAME} bytes")
            }
            Self::CmdlineTooLong { len } => {
                write!(f, "cmdline of {len} bytes is longer than {MAX_CMDLINE}")
            }
            Self::CmdlineNotPrintable { at } => {
                write!(f, "cmdline byte {at} is not printable ASCII")
            }
        }
    }
}

impl LinuxBoot<'_> {
    /// Check the entry.
    pub fn check(&self) -> Result<(), LinuxError> {
        if self.initrd.is_some_and(|m| !name_ok(m)) {
            return Err(LinuxError::BadInitrdModule);
        }
        let len = self.cmdline.len();
        if len > MAX_CMDLINE {
            return Err(LinuxError::CmdlineTooLong { len });
        }
        if let Some(at) = self.cmdline.bytes().position(|b| !(b' '..=b'~').contains(&b)) {
            return Err(LinuxError::CmdlineNotPrintable { at });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LinuxBoot, LinuxError, MAX_CMDLINE};

    #[test]
    fn a_command_line_is_printable_and_short_enough() {
        let ok = LinuxBoot { initrd: Some("initramfs"), cmdline: "console=ttyS0 quiet" };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(LinuxBoot { initrd: None, cmdline: "" }.check(), Ok(()));
        let long = "x".repeat(MAX_CMDLINE + 1);
        let e = LinuxBoot { initrd: None, cmdline: &long }.check();
        assert_eq!(e, Err(LinuxError::CmdlineTooLong { len: 2048 }));
        let e = LinuxBoot { initrd: None, cmdline: "a\0b" }.check();
        assert_eq!(e, Err(LinuxError::CmdlineNotPrintable { at: 1 }));
        let e = LinuxBoot { initrd: None, cmdline: "tab\there" }.check();
        assert_eq!(e.unwrap_err().to_string(), "cmdline byte 3 is not printable ASCII");
        let e = LinuxBoot { initrd: Some(""), cmdline: "" }.check();
        assert_eq!(e, Err(LinuxError::BadInitrdModule));
    }
}
