//! The 16550 as a device process: [`Server::handle`] answers one device-model request
//! (`protocols::device_model`) with the `uart16550` model, the same model the VMM runs
//! inside itself, so a guest cannot tell where its UART runs. The process around it
//! (`main.rs`) only receives, calls this, and replies.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects, clippy::indexing_slicing))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

use protocols::device_model::{ModelError, Request, Response, Space, PAGE_SIZE};
use uart16550::{SerialSink, Uart16550};

/// One UART of `ports` ports, transmitting into its sink.
pub struct Server<S> {
    uart: Uart16550<S>,
    ports: u16,
}

impl<S: SerialSink> Server<S> {
    /// A UART in its reset state on `ports` ports (8 for a 16550), printing into `sink`.
    pub fn new(sink: S, ports: u16) -> Self {
        Self { uart: Uart16550::new(sink), ports }
    }

    /// The model.
    pub fn uart(&self) -> &Uart16550<S> {
        &self.uart
    }

    /// Answer `request`; `page` is the page shared with the VMM (string I/O's elements).
    pub fn handle(&mut self, request: &Request, page: &mut [u8]) -> Result<Response, ModelError> {
        let mut data = 0;
        match *request {
            Request::Access(a) => {
                if a.space != Space::Port {
                    return Err(ModelError::BadOffset);
                }
                let size = usize::from(a.size);
                let end = a.offset.checked_add(u64::from(a.size)).ok_or(ModelError::BadOffset)?;
                if end > u64::from(self.ports) {
                    return Err(ModelError::BadOffset);
                }
                if a.count == 1 {
                    let mut le = a.data.to_le_bytes();
                    let bytes = le.get_mut(..size).ok_or(ModelError::BadSize)?;
                    if a.write {
                        self.uart.write(a.offset, bytes);
                    } else {
                        self.uart.read(a.offset, bytes);
                        data = u64::from_le_bytes(le);
                    }
                } else {
                    let len = usize::from(a.count).saturating_mul(size);
                    let elements =
                        page.get_mut(..len.min(PAGE_SIZE)).ok_or(ModelError::BadCount)?;
                    for element in elements.chunks_mut(size) {
                        if a.write {
                            self.uart.write(a.offset, element);
                        } else {
                            self.uart.read(a.offset, element);
                        }
                    }
                }
            }
            Request::Poll => {}
            Request::Input(chunk) => {
                let taken = chunk.as_bytes().iter().take_while(|&&b| self.uart.receive(b)).count();
                data = taken as u64;
            }
            Request::Console(chunk) => {
                let bytes = chunk.as_bytes();
                bytes.iter().for_each(|&b| self.uart.sink_mut().write_byte(b));
                if bytes.is_empty() {
                    // The guest went idle: what the sink holds back (a prompt) goes out.
                    self.uart.sink_mut().flush();
                }
                data = bytes.len() as u64;
            }
        }
        Ok(Response { data, level: self.uart.irq_level() })
    }
}

#[cfg(test)]
mod tests {
    use super::Server;
    use protocols::console::Chunk;
    use protocols::device_model::{Access, ModelError, Request, Response, Space};

    fn access(write: bool, offset: u64, data: u64) -> Request {
        Request::Access(Access { space: Space::Port, size: 1, write, count: 1, offset, data })
    }

    #[test]
    fn serves_register_accesses_and_reports_the_line() {
        let mut s = Server::new(Vec::new(), 8);
        let mut page = [0u8; 4096];
        assert_eq!(s.handle(&access(true, 7, 0x42), &mut page), Ok(Response::default()));
        assert_eq!(s.handle(&access(false, 7, 0), &mut page).unwrap().data, 0x42);
        assert!(s.handle(&access(true, 1, 0x02), &mut page).unwrap().level, "THRE interrupt");
        assert_eq!(s.handle(&access(true, 0, u64::from(b'a')), &mut page).unwrap().data, 0);
        assert_eq!(s.uart().sink(), b"a");
    }

    #[test]
    fn string_io_uses_the_shared_page() {
        let mut s = Server::new(Vec::new(), 8);
        let mut page = [0u8; 4096];
        page[..6].copy_from_slice(b"batch\n");
        let out = Access { space: Space::Port, size: 1, write: true, count: 6, offset: 0, data: 0 };
        s.handle(&Request::Access(out), &mut page).unwrap();
        assert_eq!(s.uart().sink(), b"batch\n");
        s.handle(&access(true, 7, 0x99), &mut page).unwrap();
        let inb = Access { write: false, count: 3, offset: 7, ..out };
        s.handle(&Request::Access(inb), &mut page).unwrap();
        assert_eq!(&page[..3], &[0x99; 3]);
    }

    #[test]
    fn input_console_and_refusals() {
        let mut s = Server::new(Vec::new(), 8);
        let mut page = [0u8; 4096];
        // FIFOs off: the holding register takes one byte.
        let r = s.handle(&Request::Input(Chunk::new(b"xy").unwrap()), &mut page).unwrap();
        assert_eq!(r.data, 1);
        s.handle(&Request::Console(Chunk::new(b"put").unwrap()), &mut page).unwrap();
        assert_eq!(s.uart().sink(), b"put");
        assert_eq!(s.handle(&access(false, 8, 0), &mut page), Err(ModelError::BadOffset));
        let mmio =
            Access { space: Space::Mmio, size: 4, write: false, count: 1, offset: 0, data: 0 };
        assert_eq!(s.handle(&Request::Access(mmio), &mut page), Err(ModelError::BadOffset));
    }
}
