//! The console driver: the ring-3 process that owns COM1, and its protocol.
//!
//! Clients print by calling the driver's endpoint (their badge tells them apart). A
//! [`Request::Write`] carries up to [`MAX_WRITE`] bytes packed little-endian into the four
//! message words, the byte count in the label's low byte, so a write needs no shared
//! memory and stays on the register-only IPC path. The driver collects each client's
//! bytes until a newline and transmits whole lines, so the lines of different clients
//! never interleave; it replies once the line is in the UART, so a client that prints
//! and then stops the machine loses nothing. Replies: label [`OK`] with word 0 = the bytes
//! taken, or [`BAD_REQUEST`].
//!
//! Input: the driver keeps what COM1 receives in a bounded ring and signals the input
//! notification ([`slot::INPUT_NOTIFICATION`]), which only the client that owns the
//! console input holds; that client then fetches the bytes with [`READ_INPUT`] through its
//! endpoint copy, whose badge carries [`INPUT_BADGE`]. The driver never sends to a client,
//! so a client blocked printing and a driver with input for it cannot wait on each other.

use crate::ipc::{MsgInfo, MSG_REGS};

/// COM1's ports, the driver's `IoPorts` capability.
pub const PORTS: (u16, u16) = (0x3f8, 0x3ff);
/// COM1's IRQ line.
pub const IRQ: u8 = 4;

/// Most bytes in one write: four message words.
pub const MAX_WRITE: usize = 8 * MSG_REGS;
/// Label of a write; the byte count (0..=[`MAX_WRITE`]) is added to it.
pub const WRITE: u64 = 0x7700; // 'w' << 8
/// Label of a statistics request; the reply's words are `[interrupts served, lines
/// written, bytes written, input bytes dropped]`.
pub const STATS: u64 = 0x7300; // 's' << 8
/// Label of an input fetch (no words): the reply is [`input_message`] of up to
/// [`MAX_WRITE`] received bytes (none when the ring is empty), or [`NOT_OWNER`].
pub const READ_INPUT: u64 = 0x7200; // 'r' << 8
/// Reply label of an input fetch; the byte count (0..=[`MAX_WRITE`]) is added to it.
pub const INPUT: u64 = 0x6900; // 'i' << 8
/// Reply label: done.
pub const OK: u64 = 0;
/// Reply label: the request was malformed.
pub const BAD_REQUEST: u64 = 1;
/// Reply label: only the console input's owner may read input.
pub const NOT_OWNER: u64 = 2;
/// The badge bit that makes a client the console input's owner (the root task mints it
/// for at most one VMM; badges are otherwise small numbers).
pub const INPUT_BADGE: u64 = 1 << 32;

/// Slots of the driver's CSpace, filled by the root task.
pub mod slot {
    /// Its own CNode.
    pub const CNODE: u64 = 1;
    /// Its own address space.
    pub const VSPACE: u64 = 2;
    /// `IoPorts` for [`super::PORTS`] and nothing else.
    pub const PORTS: u64 = 3;
    /// The `IrqHandler` of [`super::IRQ`].
    pub const IRQ_HANDLER: u64 = 4;
    /// The notification the IRQ is bound to (the driver binds it).
    pub const IRQ_NOTIFICATION: u64 = 5;
    /// The endpoint it serves.
    pub const ENDPOINT: u64 = 6;
    /// The notification it signals when input arrives (a copy of the named notification
    /// `manifest::CONSOLE_INPUT_NOTIFICATION` with the write right; empty when no VM owns
    /// the input).
    pub const INPUT_NOTIFICATION: u64 = 7;
    /// Untyped memory of 2^[`super::UNTYPED_BITS`] bytes for its interrupt thread (TCB,
    /// stack, transmit notification); without it the driver does not receive.
    pub const UNTYPED: u64 = 8;
    /// Where the driver makes its interrupt thread's TCB.
    pub const IRQ_TCB: u64 = 9;
    /// Where the driver makes that thread's stack frame.
    pub const IRQ_STACK: u64 = 10;
    /// Where the driver makes the notification its interrupt thread signals on every
    /// interrupt, which the transmitter waits on.
    pub const TX_NOTIFICATION: u64 = 11;
}

/// log2 of the untyped memory in [`slot::UNTYPED`]: a TCB, a stack page and a
/// notification.
pub const UNTYPED_BITS: u8 = 14;

/// log2 of the driver's CNode slot count.
pub const CNODE_RADIX: u8 = 4;

/// Up to [`MAX_WRITE`] bytes of one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    bytes: [u8; MAX_WRITE],
    len: usize,
}

impl Chunk {
    /// A chunk of `bytes`; `None` if there are more than [`MAX_WRITE`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut c = Self { bytes: [0; MAX_WRITE], len: bytes.len() };
        c.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(c)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// A request to the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Print these bytes.
    Write(Chunk),
    /// Report the driver's counters.
    Stats,
    /// Hand over received bytes (the input owner only).
    ReadInput,
}

/// The message of a write of `bytes`; `None` if there are more than [`MAX_WRITE`].
pub fn write_message(bytes: &[u8]) -> Option<(MsgInfo, [u64; MSG_REGS])> {
    bytes_message(WRITE, bytes)
}

/// The reply to [`READ_INPUT`] carrying `bytes`; `None` if there are more than
/// [`MAX_WRITE`].
pub fn input_message(bytes: &[u8]) -> Option<(MsgInfo, [u64; MSG_REGS])> {
    bytes_message(INPUT, bytes)
}

/// Up to [`MAX_WRITE`] bytes as a message: label `base` + the count, the bytes packed
/// little-endian in the fewest words. The one encoding of every byte-carrying message
/// (writes, input replies, and the VMM's forwarded input).
pub fn bytes_message(base: u64, bytes: &[u8]) -> Option<(MsgInfo, [u64; MSG_REGS])> {
    if bytes.len() > MAX_WRITE {
        return None;
    }
    let mut words = [0u64; MSG_REGS];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
        let mut le = [0u8; 8];
        le.iter_mut().zip(chunk).for_each(|(d, s)| *d = *s);
        *word = u64::from_le_bytes(le);
    }
    let len = bytes.len().div_ceil(8) as u8;
    Some((MsgInfo::new(base + bytes.len() as u64, len), words))
}

/// The bytes of a [`bytes_message`] with label base `base`; `None` for another label, a
/// count above [`MAX_WRITE`], or a word count that does not match the byte count.
pub fn decode_bytes(base: u64, info: MsgInfo, words: [u64; MSG_REGS]) -> Option<Chunk> {
    let len = usize::try_from(info.label.checked_sub(base)?).ok()?;
    if len > MAX_WRITE || usize::from(info.len) != len.div_ceil(8) {
        return None;
    }
    let mut bytes = [0u8; MAX_WRITE];
    for (dst, word) in bytes.chunks_mut(8).zip(words) {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    Some(Chunk { bytes, len })
}

/// Decode a request; `None` for anything malformed: an unknown label, a count above
/// [`MAX_WRITE`], or a word count that does not match the byte count.
pub fn decode(info: MsgInfo, words: [u64; MSG_REGS]) -> Option<Request> {
    match info.label {
        STATS => Some(Request::Stats),
        READ_INPUT => Some(Request::ReadInput),
        _ => decode_bytes(WRITE, info, words).map(Request::Write),
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, decode_bytes, input_message, write_message, Request, INPUT};
    use super::{MAX_WRITE, READ_INPUT, STATS};
    use crate::ipc::MsgInfo;

    #[test]
    fn golden_write() {
        let (info, words) = write_message(b"hello, world!\n").unwrap();
        assert_eq!(info, MsgInfo::new(0x770e, 2));
        assert_eq!(words, [0x7720_2c6f_6c6c_6568, 0x0000_0a21_646c_726f, 0, 0]);
        assert_eq!(info.to_raw(), 0x0770_e002);
        let Some(Request::Write(c)) = decode(info, words) else { panic!("not a write") };
        assert_eq!(c.as_bytes(), b"hello, world!\n");
    }

    #[test]
    fn every_length_round_trips() {
        let text: Vec<u8> = (0..MAX_WRITE as u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=MAX_WRITE {
            let (info, words) = write_message(&text[..n]).unwrap();
            let Some(Request::Write(c)) = decode(info, words) else { panic!("{n}") };
            assert_eq!(c.as_bytes(), &text[..n]);
        }
        assert_eq!(write_message(&[0; MAX_WRITE + 1]), None);
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert_eq!(decode(MsgInfo::new(STATS, 0), [0; 4]), Some(Request::Stats));
        assert_eq!(decode(MsgInfo::new(READ_INPUT, 0), [0; 4]), Some(Request::ReadInput));
        for info in [
            MsgInfo::new(0x7721, 4), // 33 bytes
            MsgInfo::new(0x7710, 1), // 16 bytes in one word
            MsgInfo::new(0x7701, 2), // 1 byte in two words
            MsgInfo::new(0x1234, 0), // unknown label
            MsgInfo::new(0, 0),
        ] {
            assert_eq!(decode(info, [0; 4]), None, "{info:?}");
        }
    }

    #[test]
    fn golden_input_reply() {
        let (info, words) = input_message(b"uname -r\n").unwrap();
        assert_eq!(info, MsgInfo::new(0x6909, 2));
        assert_eq!(words, [0x722d_2065_6d61_6e75, 0x0a, 0, 0]);
        assert_eq!(decode_bytes(INPUT, info, words).unwrap().as_bytes(), b"uname -r\n");
        let (none, _) = input_message(b"").unwrap();
        assert_eq!(none, MsgInfo::new(INPUT, 0), "an empty ring: no words");
        assert_eq!(decode_bytes(INPUT, MsgInfo::new(0x6921, 4), [0; 4]), None, "33 bytes");
        assert_eq!(input_message(&[0; MAX_WRITE + 1]), None);
    }
}
