//! Why the ACPI tables cannot be built. Each variant names the one check that failed:
//! the configuration is checked whole before a byte is written.

use core::fmt;

/// A check of the configuration, the base address or the buffer that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No CPU was given: the MADT must describe at least the boot processor.
    NoCpus,
    /// More CPUs than processor UIDs (a byte, with 0xFF meaning "all processors").
    TooManyCpus {
        /// CPUs given.
        cpus: usize,
        /// The most the MADT describes.
        max: usize,
    },
    /// APIC ID 0xFF is the xAPIC broadcast address, no CPU's ID.
    BroadcastApicId,
    /// Two CPUs were given the same APIC ID.
    DuplicateApicId(u8),
    /// More interrupt source overrides than ISA IRQs.
    TooManyOverrides {
        /// Overrides given.
        count: usize,
        /// One per ISA IRQ.
        max: usize,
    },
    /// An override names an IRQ that is not an ISA IRQ (0-15).
    NotAnIsaIrq(u8),
    /// `base` is not 64-byte aligned (the RSDP needs 16, the FACS 64).
    MisalignedBase(u64),
    /// The tables would reach past 4 GiB, where the 32-bit pointers of the RSDP, the RSDT
    /// and the FADT cannot point.
    AboveFourGiB {
        /// The end of the tables (exclusive), or `u64::MAX` when it overflows.
        end: u64,
    },
    /// The buffer is smaller than the tables.
    BufferTooSmall {
        /// Bytes the tables need.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoCpus => f.write_str("ACPI tables need at least one CPU"),
            Self::TooManyCpus { cpus, max } => {
                write!(f, "{cpus} CPUs are more than the MADT's {max} processor UIDs")
            }
            Self::BroadcastApicId => f.write_str("APIC ID 0xff is the broadcast address"),
            Self::DuplicateApicId(id) => write!(f, "APIC ID {id:#x} is given to two CPUs"),
            Self::TooManyOverrides { count, max } => {
                write!(f, "{count} interrupt source overrides are more than the {max} ISA IRQs")
            }
            Self::NotAnIsaIrq(irq) => {
                write!(f, "interrupt source override for IRQ {irq}, not an ISA IRQ (0-15)")
            }
            Self::MisalignedBase(base) => {
                write!(f, "ACPI tables at {base:#x}: the base must be 64-byte aligned")
            }
            Self::AboveFourGiB { end } => {
                write!(f, "ACPI tables would end at {end:#x}, past the 4 GiB 32-bit pointers reach")
            }
            Self::BufferTooSmall { need, have } => {
                write!(f, "ACPI tables need {need} bytes, the buffer has {have}")
            }
        }
    }
}
