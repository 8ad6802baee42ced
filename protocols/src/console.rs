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
/// written, bytes written]`.
pub const STATS: u64 = 0x7300; // 's' << 8
/// Reply label: done.
pub const OK: u64 = 0;
/// Reply label: the request was malformed.
pub const BAD_REQUEST: u64 = 1;

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
}

/// log2 of the driver's CNode slot count.
pub const CNODE_RADIX: u8 = 4;

/// Up to [`MAX_WRITE`] bytes of one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    bytes: [u8; MAX_WRITE],
    len: usize,
}

impl Chunk {
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
}

/// The message of a write of `bytes`; `None` if there are more than [`MAX_WRITE`].
pub fn write_message(bytes: &[u8]) -> Option<(MsgInfo, [u64; MSG_REGS])> {
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
    Some((MsgInfo::new(WRITE + bytes.len() as u64, len), words))
}

/// Decode a request; `None` for anything malformed: an unknown label, a count above
/// [`MAX_WRITE`], or a word count that does not match the byte count.
pub fn decode(info: MsgInfo, words: [u64; MSG_REGS]) -> Option<Request> {
    if info.label == STATS {
        return Some(Request::Stats);
    }
    let len = usize::try_from(info.label.checked_sub(WRITE)?).ok()?;
    if len > MAX_WRITE || usize::from(info.len) != len.div_ceil(8) {
        return None;
    }
    let mut bytes = [0u8; MAX_WRITE];
    for (dst, word) in bytes.chunks_mut(8).zip(words) {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    Some(Request::Write(Chunk { bytes, len }))
}

#[cfg(test)]
mod tests {
    use super::{decode, write_message, Request, MAX_WRITE, STATS};
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
}
