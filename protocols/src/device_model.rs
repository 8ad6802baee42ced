//! The device-model protocol: a VM's device run as a ring-3 process of its own, which its
//! VMM reaches by IPC instead of calling a model inside itself (docs/abi.md, "Device
//! models").
//!
//! The VMM forwards each guest access that hits the device's range as one `Call` on the
//! device's endpoint ([`Request::Access`]); the reply carries the read data and the
//! device's interrupt line level after the access, so an access and the line change it
//! causes reach the VMM's interrupt controllers together, before the guest runs again.
//! String I/O (`rep outsb`, `rep insb`) moves a batch of elements per call through a page
//! both share ([`PAGE_SIZE`]). A line that moves without an access is announced by a
//! signal on the device's line notification; the VMM then asks for the level
//! ([`Request::Poll`]). Console input reaches the device from the VMM
//! ([`Request::Input`]); the device prints through a console endpoint of its own, and the
//! VMM hands it the bytes the guest writes to its console by hypercall
//! ([`Request::Console`]) so the VM's console stays one stream.
//!
//! Every message fits the four register words: no IPC buffer, the fastpath's shape.

use crate::console::{bytes_message, decode_bytes, Chunk, MAX_WRITE};
use crate::devices::Kind;
use crate::ipc::{MsgInfo, MSG_REGS};

/// Slots of a device process's CSpace, filled by the root task.
pub mod slot {
    /// Its own CNode.
    pub const CNODE: u64 = 1;
    /// Its own address space.
    pub const VSPACE: u64 = 2;
    /// The endpoint it serves (receive right only); its VMM calls a copy.
    pub const ENDPOINT: u64 = 3;
    /// The notification it signals when its line changes without an access (write right
    /// only); its VMM waits on a copy.
    pub const LINE: u64 = 4;
    /// The page it shares with its VMM for string I/O (read and write).
    pub const PAGE: u64 = 5;
    /// A badged endpoint of the console driver (call right only) for its output; empty
    /// without a console driver.
    pub const CONSOLE: u64 = 6;
}

/// log2 of a device process's CNode slot count.
pub const CNODE_RADIX: u8 = 4;

/// Bytes of the shared page: string I/O's elements, packed from its first byte.
pub const PAGE_SIZE: usize = 4096;

/// Label of [`Request::Access`].
pub const ACCESS: u64 = 0x6461_6363; // "dacc"
/// Label of [`Request::Poll`].
pub const POLL: u64 = 0x6470_6f6c; // "dpol"
/// Label base of [`Request::Input`]; the byte count is added.
pub const INPUT: u64 = 0x6469_6e00; // "din\0"
/// Label base of [`Request::Console`]; the byte count is added.
pub const CONSOLE: u64 = 0x6463_6f00; // "dco\0"
/// Reply label: done (an error reply's label is a [`ModelError`] code instead).
pub const OK: u64 = 0;

/// Which address space an access is in.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// I/O ports; the offset is from the device's first port.
    Port = 0,
    /// Guest-physical memory; the offset is from the device's first byte.
    Mmio = 1,
}

/// One guest access to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Ports or memory.
    pub space: Space,
    /// Bytes per element: 1, 2, 4 or 8.
    pub size: u8,
    /// A guest write (else a read).
    pub write: bool,
    /// Elements: 1 for a plain access, whose data travel in the words; 2..=[`MAX_COUNT`]
    /// for string I/O, whose `count × size` bytes lie in the shared page (a write's
    /// before the call, a read's after the reply).
    pub count: u16,
    /// From the start of the device's range.
    pub offset: u64,
    /// A plain write's data, little-endian in the low `size` bytes (0 otherwise).
    pub data: u64,
}

/// Most elements of one string access: a page of bytes.
pub const MAX_COUNT: u16 = PAGE_SIZE as u16;

/// What the VMM asks a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// A guest access.
    Access(Access),
    /// The line level now (after the device signalled its line notification).
    Poll,
    /// Host console input for the device (a UART's receiver); the reply says how many
    /// bytes it took, the rest the VMM offers again later.
    Input(Chunk),
    /// Bytes the guest wrote to its console by other means (the VMM's putchar
    /// hypercall), to go out in order with the device's own console output.
    Console(Chunk),
}

/// Why a device refused a request: the reply's label.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The label or words are no request of this protocol.
    BadRequest = 1,
    /// An access of a size the device does not take.
    BadSize = 2,
    /// An access outside the device's range, or in a space it does not have.
    BadOffset = 3,
    /// A string access of more elements than the page holds.
    BadCount = 4,
}

impl ModelError {
    /// Every error, in code order.
    pub const ALL: [Self; 4] = [Self::BadRequest, Self::BadSize, Self::BadOffset, Self::BadCount];

    /// The error with reply label `raw`.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|&e| e as u64 == raw)
    }

    /// Its name, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BadRequest => "bad request",
            Self::BadSize => "bad access size",
            Self::BadOffset => "access outside the device",
            Self::BadCount => "string access longer than the shared page",
        }
    }
}

/// A device's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// A plain read's data (little-endian, the low `size` bytes); for [`Request::Input`]
    /// and [`Request::Console`], the bytes taken.
    pub data: u64,
    /// The device's interrupt line after the request.
    pub level: bool,
}

/// Word 0 of an access: space (bits 7:0), size (15:8), write (bit 16), count (47:32).
fn access_word(a: &Access) -> u64 {
    u64::from(a.space as u8)
        | u64::from(a.size) << 8
        | u64::from(a.write) << 16
        | u64::from(a.count) << 32
}

impl Request {
    /// The message: label, word count and words.
    pub fn encode(&self) -> (MsgInfo, [u64; MSG_REGS]) {
        match self {
            Self::Access(a) => (MsgInfo::new(ACCESS, 3), [access_word(a), a.offset, a.data, 0]),
            Self::Poll => (MsgInfo::new(POLL, 0), [0; MSG_REGS]),
            // A chunk holds at most MAX_WRITE bytes, which always encode.
            Self::Input(c) => bytes_message(INPUT, c.as_bytes()).unwrap_or_default(),
            Self::Console(c) => bytes_message(CONSOLE, c.as_bytes()).unwrap_or_default(),
        }
    }

    /// Decode a request (the device's side): every field checked, so a device can act on
    /// what this returns without checking again.
    pub fn decode(info: MsgInfo, words: [u64; MSG_REGS]) -> Result<Self, ModelError> {
        match info.label {
            ACCESS => {
                let [w, offset, data, _] = words;
                let space = match w & 0xff {
                    0 => Space::Port,
                    1 => Space::Mmio,
                    _ => return Err(ModelError::BadRequest),
                };
                // Bits 31:17 and 63:48 are reserved.
                if w & 0xffff_0000_fffe_0000 != 0 {
                    return Err(ModelError::BadRequest);
                }
                let size = (w >> 8) as u8;
                if !matches!(size, 1 | 2 | 4 | 8) {
                    return Err(ModelError::BadSize);
                }
                let count = (w >> 32) as u16;
                let bytes = usize::from(count).saturating_mul(usize::from(size));
                if count == 0 || bytes > PAGE_SIZE {
                    return Err(ModelError::BadCount);
                }
                let write = w & 1 << 16 != 0;
                let unused = u64::MAX.checked_shl(u32::from(size) * 8).unwrap_or(0);
                if (count > 1 || !write) && data != 0 || data & unused != 0 {
                    return Err(ModelError::BadRequest);
                }
                Ok(Self::Access(Access { space, size, write, count, offset, data }))
            }
            POLL => Ok(Self::Poll),
            l if (INPUT..=INPUT + MAX_WRITE as u64).contains(&l) => {
                decode_bytes(INPUT, info, words).map(Self::Input).ok_or(ModelError::BadRequest)
            }
            l if (CONSOLE..=CONSOLE + MAX_WRITE as u64).contains(&l) => {
                decode_bytes(CONSOLE, info, words).map(Self::Console).ok_or(ModelError::BadRequest)
            }
            _ => Err(ModelError::BadRequest),
        }
    }
}

impl Response {
    /// The reply message: label [`OK`], words `[data, level]`.
    pub fn encode(&self) -> (MsgInfo, [u64; MSG_REGS]) {
        (MsgInfo::new(OK, 2), [self.data, u64::from(self.level), 0, 0])
    }

    /// The reply message of a refusal: label = the error's code, no words.
    pub fn refusal(e: ModelError) -> (MsgInfo, [u64; MSG_REGS]) {
        (MsgInfo::new(e as u64, 0), [0; MSG_REGS])
    }

    /// Decode a reply (the VMM's side): the response, or the device's refusal, or
    /// [`ReplyError::Malformed`] for a label or level that means nothing.
    pub fn decode(info: MsgInfo, words: [u64; MSG_REGS]) -> Result<Self, ReplyError> {
        if info.label != OK {
            return Err(ModelError::from_raw(info.label)
                .map_or(ReplyError::Malformed { label: info.label }, ReplyError::Refused));
        }
        match words[1] {
            0 | 1 => Ok(Self { data: words[0], level: words[1] == 1 }),
            _ => Err(ReplyError::Malformed { label: info.label }),
        }
    }
}

/// What is wrong with a device's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The device refused the request.
    Refused(ModelError),
    /// The reply is no reply of this protocol.
    Malformed {
        /// Its label.
        label: u64,
    },
}

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Refused(e) => write!(f, "it refused a request: {}", e.name()),
            Self::Malformed { label } => write!(f, "malformed reply (label {label:#x})"),
        }
    }
}

/// A device process's start register `rdi`: its kind (bits 7:0), its IRQ line (15:8;
/// 0xff: none), its first port (31:16) and its port count (47:32; 0: none).
pub const fn start_arg(kind: Kind, irq: Option<u8>, ports: Option<(u16, u16)>) -> u64 {
    let irq = match irq {
        Some(l) => l as u64,
        None => 0xff,
    };
    let (first, count) = match ports {
        Some((first, last)) => (first as u64, (last as u64).wrapping_sub(first as u64) + 1),
        None => (0, 0),
    };
    kind as u64 | irq << 8 | first << 16 | (count & 0xffff) << 32
}

/// The parts of a device process's start register: `(kind, irq, first port, port
/// count)`; `None` for a kind byte that names no kind.
pub fn split_start_arg(arg: u64) -> Option<(Kind, Option<u8>, u16, u16)> {
    let kind = Kind::from_raw(arg as u8)?;
    let irq = Some((arg >> 8) as u8).filter(|&l| l != 0xff);
    Some((kind, irq, (arg >> 16) as u16, (arg >> 32) as u16))
}

#[cfg(test)]
mod tests {
    use super::{
        split_start_arg, start_arg, Access, ModelError, ReplyError, Request, Response, Space,
        ACCESS, CONSOLE, INPUT, POLL,
    };
    use crate::console::Chunk;
    use crate::devices::Kind;
    use crate::ipc::MsgInfo;

    fn plain(write: bool, offset: u64, data: u64) -> Access {
        Access { space: Space::Port, size: 1, write, count: 1, offset, data }
    }

    /// The bytes docs/abi.md gives.
    #[test]
    fn golden_access() {
        let (info, words) = Request::Access(plain(true, 7, 0x5a)).encode();
        assert_eq!(info, MsgInfo::new(0x6461_6363, 3));
        assert_eq!(words, [0x0001_0001_0100, 7, 0x5a, 0]);
        let string =
            Access { space: Space::Port, size: 2, write: false, count: 300, ..plain(false, 0, 0) };
        let (info, words) = Request::Access(string).encode();
        assert_eq!(words, [0x012c_0000_0200, 0, 0, 0]);
        assert_eq!(Request::decode(info, words), Ok(Request::Access(string)));
        let mmio = Access {
            space: Space::Mmio,
            size: 8,
            write: true,
            count: 1,
            offset: 0x10,
            data: u64::MAX,
        };
        let (info, words) = Request::Access(mmio).encode();
        assert_eq!(words[0], 0x0001_0001_0801);
        assert_eq!(Request::decode(info, words), Ok(Request::Access(mmio)));
    }

    #[test]
    fn every_request_round_trips() {
        let chunk = |b: &[u8]| Chunk::new(b).unwrap();
        for r in [
            Request::Access(plain(false, 5, 0)),
            Request::Access(plain(true, 0, 0xff)),
            Request::Poll,
            Request::Input(chunk(b"ls\n")),
            Request::Input(chunk(b"")),
            Request::Console(chunk(b"guest64: vmcall putchar")),
        ] {
            let (info, words) = r.encode();
            assert_eq!(Request::decode(info, words), Ok(r), "{r:?}");
        }
        assert_eq!(Request::Poll.encode().0, MsgInfo::new(POLL, 0));
        let (info, words) = Request::Input(chunk(b"ab")).encode();
        assert_eq!((info, words[0]), (MsgInfo::new(INPUT + 2, 1), 0x6261));
        assert_eq!(Request::Console(chunk(b"")).encode().0, MsgInfo::new(CONSOLE, 0));
    }

    #[test]
    fn malformed_requests_are_refused_by_name() {
        let ok = |w0: u64, data: u64| Request::decode(MsgInfo::new(ACCESS, 3), [w0, 0, data, 0]);
        assert_eq!(ok(0x0001_0001_0100, 0x5a).map(|_| ()), Ok(()));
        assert_eq!(ok(0x0001_0001_0102, 0), Err(ModelError::BadRequest), "space 2");
        assert_eq!(ok(0x0001_0001_0300, 0), Err(ModelError::BadSize), "size 3");
        assert_eq!(ok(0x0001_0100, 0), Err(ModelError::BadCount), "count 0");
        assert_eq!(ok(0x1000_0000_0400, 0), Err(ModelError::BadCount), "4096 dwords");
        assert_eq!(
            ok(0x1000_0000_0100, 0),
            Ok(Request::Access(Access { count: 4096, ..plain(false, 0, 0) }))
        );
        assert_eq!(ok(0x0001_0001_0100, 0x1ff), Err(ModelError::BadRequest), "data past the size");
        assert_eq!(ok(0x0001_0000_0100, 1), Err(ModelError::BadRequest), "a read with data");
        assert_eq!(ok(0x0001_0000_0100 | 1 << 20, 0), Err(ModelError::BadRequest), "reserved bit");
        assert_eq!(
            Request::decode(MsgInfo::new(INPUT + 33, 4), [0; 4]),
            Err(ModelError::BadRequest)
        );
        assert_eq!(Request::decode(MsgInfo::new(0x1234, 0), [0; 4]), Err(ModelError::BadRequest));
    }

    #[test]
    fn replies_carry_data_and_level_or_a_typed_refusal() {
        let r = Response { data: 0xa5, level: true };
        let (info, words) = r.encode();
        assert_eq!((info, words), (MsgInfo::new(0, 2), [0xa5, 1, 0, 0]));
        assert_eq!(Response::decode(info, words), Ok(r));
        for e in ModelError::ALL {
            let (info, words) = Response::refusal(e);
            assert_eq!(info.label, e as u64);
            assert_eq!(Response::decode(info, words), Err(ReplyError::Refused(e)));
        }
        assert_eq!(
            Response::decode(MsgInfo::new(99, 0), [0; 4]),
            Err(ReplyError::Malformed { label: 99 })
        );
        assert_eq!(
            Response::decode(MsgInfo::new(0, 2), [0, 2, 0, 0]),
            Err(ReplyError::Malformed { label: 0 }),
            "a level that is neither 0 nor 1"
        );
    }

    #[test]
    fn the_start_argument() {
        let arg = start_arg(Kind::Uart16550, Some(4), Some((0x3f8, 0x3ff)));
        assert_eq!(arg, 0x0008_03f8_0409);
        assert_eq!(split_start_arg(arg), Some((Kind::Uart16550, Some(4), 0x3f8, 8)));
        assert_eq!(
            split_start_arg(start_arg(Kind::Ioapic, None, None)),
            Some((Kind::Ioapic, None, 0, 0))
        );
        assert_eq!(split_start_arg(0x00), None);
    }
}
