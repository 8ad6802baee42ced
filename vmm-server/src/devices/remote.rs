//! A device that runs as a process of its own (`protocols::device_model`): to the VMM it
//! is a bus entry whose accesses become requests, one call each (one per batch for
//! string I/O), and whose interrupt line is the level the last reply reported.
//!
//! The call itself is a [`Link`], a plain function the VMM process makes from its
//! capabilities (host tests pass a fake device), so this logic runs on the host. The
//! first failure (the IPC failed: the device is gone; or its reply is refused or
//! malformed) is kept and ends the device: later accesses read all ones without a call,
//! and the dispatcher stops the VM naming the device ([`RemoteDevice::take_failure`]).

use protocols::device_model::{Access, ReplyError, Request, Response, Space, PAGE_SIZE};
use protocols::devices::Kind;
use protocols::error::Error;

/// Bytes that travel through the shared page with a request.
pub enum Bulk<'a> {
    /// None (a plain access, a poll, input).
    None,
    /// A string write's elements, which the link places in the page before the call.
    Out(&'a [u8]),
    /// Room for a string read's elements, which the link fills from the page after the
    /// reply.
    In(&'a mut [u8]),
}

/// Send `request` to the device (with its `bulk` data) and wait for its decoded reply.
pub type Link = fn(&Request, Bulk<'_>) -> Result<Response, LinkError>;

/// Why a request to a device process failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The call failed (the device process is gone, or its endpoint is).
    Ipc(Error),
    /// The device's reply.
    Reply(ReplyError),
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Ipc(e) => write!(f, "its process does not answer ({})", e.name()),
            Self::Reply(e) => e.fmt(f),
        }
    }
}

/// A device process as the VMM sees it.
#[derive(Clone, Copy, Debug)]
pub struct RemoteDevice {
    kind: Kind,
    link: Link,
    /// The line level the last reply reported.
    level: bool,
    /// The first failure; the device takes no request after it.
    failure: Option<LinkError>,
    /// The failure was taken (the VM is stopping).
    reported: bool,
}

impl RemoteDevice {
    /// The device of `kind` reached through `link`; its line starts low.
    pub fn new(kind: Kind, link: Link) -> Self {
        Self { kind, link, level: false, failure: None, reported: false }
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Its interrupt line.
    #[inline]
    pub fn level(&self) -> bool {
        self.level
    }

    /// Whether a request failed: the VM must stop.
    #[inline]
    pub fn failed(&self) -> bool {
        self.failure.is_some() && !self.reported
    }

    /// The failure, once.
    pub fn take_failure(&mut self) -> Option<LinkError> {
        if self.reported {
            return None;
        }
        self.reported = self.failure.is_some();
        self.failure
    }

    fn request(&mut self, request: &Request, bulk: Bulk<'_>) -> Option<Response> {
        if self.failure.is_some() {
            return None;
        }
        match (self.link)(request, bulk) {
            Ok(r) => {
                self.level = r.level;
                Some(r)
            }
            Err(e) => {
                self.failure = Some(e);
                None
            }
        }
    }

    /// A plain port read of `data.len()` (1, 2, 4 or 8) bytes; all ones when it fails.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let a = access(offset, data.len(), false, 1, 0);
        match a.and_then(|a| self.request(&Request::Access(a), Bulk::None)) {
            Some(r) => data.iter_mut().zip(r.data.to_le_bytes()).for_each(|(d, s)| *d = s),
            None => data.fill(0xff),
        }
    }

    /// A plain port write of `data` (1, 2, 4 or 8 bytes).
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut le = [0u8; 8];
        le.iter_mut().zip(data).for_each(|(d, s)| *d = *s);
        if let Some(a) = access(offset, data.len(), true, 1, u64::from_le_bytes(le)) {
            self.request(&Request::Access(a), Bulk::None);
        }
    }

    /// A batch of string-I/O reads of `size`-byte elements into `data` (a whole number
    /// of elements, at most a page); all ones when it fails.
    pub fn read_string(&mut self, offset: u64, size: u8, data: &mut [u8]) {
        let count = data.len().checked_div(usize::from(size)).unwrap_or(0);
        match access(offset, usize::from(size), false, count, 0) {
            Some(a) if data.len() <= PAGE_SIZE => {
                if self.request(&Request::Access(a), Bulk::In(data)).is_none() {
                    data.fill(0xff);
                }
            }
            _ => data.fill(0xff),
        }
    }

    /// A batch of string-I/O writes of `size`-byte elements from `data`.
    pub fn write_string(&mut self, offset: u64, size: u8, data: &[u8]) {
        let count = data.len().checked_div(usize::from(size)).unwrap_or(0);
        if let Some(a) = access(offset, usize::from(size), true, count, 0) {
            if data.len() <= PAGE_SIZE {
                self.request(&Request::Access(a), Bulk::Out(data));
            }
        }
    }

    /// Offer one console input byte; whether the device took it.
    pub fn input(&mut self, byte: u8) -> bool {
        let Some(chunk) = protocols::console::Chunk::new(&[byte]) else { return false };
        self.request(&Request::Input(chunk), Bulk::None).is_some_and(|r| r.data == 1)
    }

    /// Console bytes the guest wrote by other means (up to a message's worth; none: the
    /// guest went idle, and the device passes on what it holds back).
    pub fn console(&mut self, bytes: &[u8]) {
        if let Some(chunk) = protocols::console::Chunk::new(bytes) {
            self.request(&Request::Console(chunk), Bulk::None);
        }
    }

    /// Ask for the line level (the device signalled a change without an access).
    pub fn poll(&mut self) {
        self.request(&Request::Poll, Bulk::None);
    }
}

/// A port access of `count` elements of `size` bytes, if the protocol can carry it.
fn access(offset: u64, size: usize, write: bool, count: usize, data: u64) -> Option<Access> {
    let size = u8::try_from(size).ok().filter(|s| matches!(s, 1 | 2 | 4 | 8))?;
    let count = u16::try_from(count).ok().filter(|&c| c > 0)?;
    Some(Access { space: Space::Port, size, write, count, offset, data })
}

#[cfg(test)]
pub mod tests {
    //! A fake device process: the `uart16550` model behind the protocol's encoding, as
    //! the `uart-model` process serves it, reached through a [`Link`].

    use super::{Bulk, LinkError, RemoteDevice};
    use protocols::device_model::{Request, Response};
    use protocols::devices::Kind;
    use std::cell::RefCell;
    use uart16550::Uart16550;

    std::thread_local! {
        /// The fake device's UART and what it printed; `None`: the process is gone.
        pub static DEVICE: RefCell<Option<Uart16550<Vec<u8>>>> = const { RefCell::new(None) };
        /// Requests served.
        pub static CALLS: RefCell<u64> = const { RefCell::new(0) };
    }

    /// Start the fake device for this test thread.
    pub fn start() {
        DEVICE.with(|d| *d.borrow_mut() = Some(Uart16550::new(Vec::new())));
    }

    /// What the fake device printed.
    pub fn printed() -> Vec<u8> {
        DEVICE.with(|d| d.borrow().as_ref().map(|u| u.sink().clone()).unwrap_or_default())
    }

    /// Requests it served.
    pub fn calls() -> u64 {
        CALLS.with(|c| *c.borrow())
    }

    /// The link: encode, decode as the device does, serve, encode the reply, decode.
    pub fn link(request: &Request, bulk: Bulk<'_>) -> Result<Response, LinkError> {
        let (info, words) = request.encode();
        let request = Request::decode(info, words).expect("the VMM sends what decodes");
        CALLS.with(|c| *c.borrow_mut() += 1);
        DEVICE.with(|d| {
            let mut d = d.borrow_mut();
            let uart = d.as_mut().ok_or(LinkError::Ipc(protocols::error::Error::ObjectDeleted))?;
            let mut data = 0;
            match request {
                Request::Access(a) if a.write && a.count == 1 => {
                    uart.write(a.offset, &a.data.to_le_bytes()[..usize::from(a.size)])
                }
                Request::Access(a) if a.count == 1 => {
                    let mut b = [0u8; 8];
                    uart.read(a.offset, &mut b[..usize::from(a.size)]);
                    data = u64::from_le_bytes(b);
                }
                Request::Access(a) => {
                    let len = usize::from(a.count) * usize::from(a.size);
                    let step = usize::from(a.size);
                    match bulk {
                        Bulk::Out(bytes) => {
                            bytes[..len].chunks(step).for_each(|e| uart.write(a.offset, e))
                        }
                        Bulk::In(room) => {
                            room[..len].chunks_mut(step).for_each(|e| uart.read(a.offset, e))
                        }
                        Bulk::None => panic!("a string access without its page"),
                    }
                }
                Request::Poll => {}
                Request::Input(c) => {
                    data = c.as_bytes().iter().filter(|&&b| uart.receive(b)).count() as u64
                }
                Request::Console(c) => {
                    c.as_bytes().iter().for_each(|&b| uart.sink_mut().push(b));
                    data = c.as_bytes().len() as u64;
                }
            }
            let (info, words) = Response { data, level: uart.irq_level() }.encode();
            Response::decode(info, words).map_err(LinkError::Reply)
        })
    }

    #[test]
    fn accesses_become_requests_and_replies_set_the_line() {
        start();
        let mut d = RemoteDevice::new(Kind::Uart16550, link);
        d.write(7, &[0xa5]);
        let mut b = [0u8; 1];
        d.read(7, &mut b);
        assert_eq!(b, [0xa5], "the scratch register, out of process");
        assert!(!d.level());
        d.write(1, &[0x02]); // IER: THR empty raises the line at once
        assert!(d.level(), "the reply carries the line");
        d.write_string(0, 1, b"hi\n");
        assert_eq!(printed(), b"hi\n");
        let mut two = [0u8; 2];
        d.read_string(7, 1, &mut two);
        assert_eq!(two, [0xa5, 0xa5]);
        assert!(d.input(b'x'));
        assert!(!d.failed());
    }

    #[test]
    fn a_gone_device_fails_once_and_reads_all_ones() {
        start();
        let mut d = RemoteDevice::new(Kind::Uart16550, link);
        DEVICE.with(|d| *d.borrow_mut() = None);
        let mut b = [0u8; 2];
        d.read(0, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        assert!(d.failed());
        let before = calls();
        d.write(0, &[1]);
        assert_eq!(calls(), before, "no call after the failure");
        assert_eq!(d.take_failure(), Some(LinkError::Ipc(protocols::error::Error::ObjectDeleted)));
        assert_eq!(d.take_failure(), None, "reported once");
        d.read(0, &mut b);
        assert_eq!(b, [0xff, 0xff]);
    }

    #[test]
    fn a_refusing_device_is_a_failure() {
        fn refuses(_: &Request, _: Bulk<'_>) -> Result<Response, LinkError> {
            let (info, words) = Response::refusal(protocols::device_model::ModelError::BadOffset);
            Response::decode(info, words).map_err(LinkError::Reply)
        }
        let mut d = RemoteDevice::new(Kind::Uart16550, refuses);
        d.write(0, &[1]);
        let e = d.take_failure().unwrap();
        assert_eq!(e.to_string(), "it refused a request: access outside the device");
    }
}
