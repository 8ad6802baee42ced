//! Device models, one per file. Each implements [`crate::bus::BusDevice`] (or, for the
//! PIC pair whose two chips sit at unrelated ports, per-chip port methods) and keeps its
//! interrupt output as a level the VMM routes to the interrupt controller.

pub mod acpi_pm;
pub mod cmos_rtc;
pub mod debug_exit;
pub mod i8042;
pub mod ioapic;
pub mod lapic;
pub mod pic8259;
pub mod pit8254;
pub mod remote;
#[cfg(any(test, feature = "test-modes"))]
pub mod scratch;
pub mod uart16550;
