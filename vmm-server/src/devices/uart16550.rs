//! The 16550A UART: the model is the `uart16550` crate, which the `uart-model` device
//! process runs too; here it becomes a device on the VMM's port bus.

use crate::bus::BusDevice;
pub use uart16550::{reg, LineSink, SerialSink, Uart16550, FIFO_DEPTH};

impl<S: SerialSink> BusDevice for Uart16550<S> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        Uart16550::read(self, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        Uart16550::write(self, offset, data);
    }
}
