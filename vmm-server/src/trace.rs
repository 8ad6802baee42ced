//! Exit traces: a compact binary record of a VM's exits and the VMM's replies, written
//! by the VMM as console lines while the guest runs and replayed on the host against
//! the same dispatcher (`serve::answer`), so a real run becomes a deterministic test and
//! fuzz seeds.
//!
//! A trace is a header, then one record per exit. The header carries what else the
//! replies depended on: the guest mode (which picks `serve::config`) and every host CPUID
//! leaf the VMM read when it built the VM's CPUID table. Numbers are LEB128 varints.
//!
//! ```text
//! trace  := "VMTR" version:u8 mode:u8 n:varint (leaf subleaf eax ebx ecx edx)*n record*
//! record := n_exit:varint changed:bitmap(n_exit) xor:varint* n_reply:varint word:varint*
//! ```
//!
//! Successive exits share most words (segments, control registers, most GPRs), so an
//! exit message is stored as the words that changed since the previous record, XORed
//! with their previous value: a typical exit takes 20-30 bytes instead of 500. Replies
//! are short and stored whole, in their wire form.
//!
//! On the console a trace is `trace: begin`, then `trace: <base64>` lines of at most
//! [`LINE_BYTES`] bytes each, then `trace: end <records> <bytes> <fnv1a32>`, so a
//! serial log can be turned back into the exact bytes and checked.
//!
//! Guest RAM is not recorded: a replay sees zeroed RAM, so exits whose emulation reads
//! guest memory (string I/O, MMIO decoding) may replay differently; the test guests'
//! port I/O, CPUID, HLT and hypercall exits do not.

use crate::cpuid::CpuidRegs;
use crate::devices::uart16550::SerialSink;
use crate::dispatch::Vm;
use crate::guest_memory::GuestMemory;
use protocols::vmexit::{BatchError, ExitMessage, ExitReply, WireError};

/// The first bytes of every trace.
pub const MAGIC: [u8; 4] = *b"VMTR";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Most host CPUID leaves a header carries.
pub const MAX_CPUID: usize = 64;
/// Trace bytes per console line (64 base64 characters).
pub const LINE_BYTES: usize = 48;
/// What every trace line starts with.
pub const LINE_PREFIX: &str = "trace: ";

/// One host CPUID answer the VMM used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuidEntry {
    /// EAX in.
    pub leaf: u32,
    /// ECX in.
    pub subleaf: u32,
    /// What the host answered.
    pub regs: CpuidRegs,
}

/// What a trace's replies depend on besides its exits.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// The guest mode (`object::vcpu_mode`).
    pub mode: u8,
    /// The host CPUID leaves read when the VM was built, in order.
    pub cpuid: heapless::Vec<CpuidEntry, MAX_CPUID>,
}

impl Header {
    /// Note a host CPUID answer (for the recording VMM's `host_cpuid` wrapper); leaves
    /// past [`MAX_CPUID`] are dropped, and then a replay answers zeros for them.
    pub fn note(&mut self, leaf: u32, subleaf: u32, regs: CpuidRegs) {
        let _ = self.cpuid.push(CpuidEntry { leaf, subleaf, regs });
    }

    /// The recorded host answer for `leaf`/`subleaf` (zeros for one never read).
    pub fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.cpuid
            .iter()
            .find(|e| e.leaf == leaf && e.subleaf == subleaf)
            .map_or_else(CpuidRegs::default, |e| e.regs)
    }

    /// Encode, byte by byte.
    pub fn encode(&self, out: &mut impl FnMut(u8)) {
        MAGIC.iter().for_each(|b| out(*b));
        out(VERSION);
        out(self.mode);
        varint(self.cpuid.len() as u64, out);
        for e in &self.cpuid {
            for v in [e.leaf, e.subleaf, e.regs.eax, e.regs.ebx, e.regs.ecx, e.regs.edx] {
                varint(u64::from(v), out);
            }
        }
    }
}

/// LEB128: seven bits a byte, low first, the top bit set on all but the last.
fn varint(mut v: u64, out: &mut impl FnMut(u8)) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out(low);
            return;
        }
        out(low | 0x80);
    }
}

/// Encodes records; keeps the previous exit's words for the delta.
pub struct Encoder {
    prev: [u64; ExitMessage::SIZE],
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// Before the first record.
    pub const fn new() -> Self {
        Self { prev: [0; ExitMessage::SIZE] }
    }

    /// Encode the exit `msg` and the reply the VMM gave, byte by byte.
    pub fn record(&mut self, msg: &ExitMessage, reply: &ExitReply, out: &mut impl FnMut(u8)) {
        let mut words = [0u64; ExitMessage::SIZE];
        let n = msg.to_words(&mut words).min(ExitMessage::SIZE);
        varint(n as u64, out);
        let (words, prev) = (words.get(..n).unwrap_or_default(), self.prev.get(..n));
        let prev = prev.unwrap_or_default();
        // One bit per word, eight words a byte: which words changed.
        for (w8, p8) in words.chunks(8).zip(prev.chunks(8)) {
            let bits = w8.iter().zip(p8).enumerate().filter(|(_, (w, p))| w != p);
            out(bits.fold(0u8, |acc, (bit, _)| acc | 1 << bit));
        }
        for (w, p) in words.iter().zip(prev) {
            if w != p {
                varint(w ^ p, out);
            }
        }
        for (d, w) in self.prev.iter_mut().zip(words) {
            *d = *w;
        }
        let mut reply_words = [0u64; ExitReply::SIZE];
        let m = reply.to_words(&mut reply_words).min(ExitReply::SIZE);
        varint(m as u64, out);
        for w in reply_words.iter().take(m) {
            varint(*w, out);
        }
    }
}

/// Why a trace does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceError {
    /// It does not start with [`MAGIC`].
    BadMagic,
    /// A version this code does not read.
    BadVersion(u8),
    /// It ends inside something, at byte offset `at`.
    Truncated {
        /// Byte offset.
        at: usize,
    },
    /// A number that does not fit (a varint over 64 bits, a count past its limit).
    BadNumber {
        /// Byte offset.
        at: usize,
    },
    /// Record `record`'s exit words do not decode.
    BadExit {
        /// Record index.
        record: usize,
        /// Why.
        error: WireError,
    },
}

impl core::fmt::Display for TraceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a trace (no VMTR magic)"),
            Self::BadVersion(v) => write!(f, "trace version {v}, this code reads {VERSION}"),
            Self::Truncated { at } => write!(f, "the trace ends early, at byte {at}"),
            Self::BadNumber { at } => write!(f, "a number out of range at byte {at}"),
            Self::BadExit { record, error } => {
                write!(f, "exit #{record} does not decode: {error}")
            }
        }
    }
}

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The exit as the VMM received it.
    pub exit: ExitMessage,
    /// The reply's wire words (`reply_len` of them).
    pub reply: [u64; ExitReply::SIZE],
    /// How many reply words.
    pub reply_len: usize,
}

impl Record {
    /// The reply's wire words.
    pub fn reply_words(&self) -> &[u64] {
        self.reply.get(..self.reply_len).unwrap_or_default()
    }

    /// The reply, decoded.
    pub fn reply(&self) -> Result<ExitReply, BatchError> {
        ExitReply::from_words(self.reply_words())
    }
}

/// Reads a trace: the header first, then records one by one.
pub struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
    prev: [u64; ExitMessage::SIZE],
    index: usize,
    failed: bool,
}

impl<'a> Decoder<'a> {
    /// Read the header of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<(Header, Self), TraceError> {
        let mut d = Self { bytes, at: 0, prev: [0; ExitMessage::SIZE], index: 0, failed: false };
        if bytes.get(..4) != Some(&MAGIC[..]) {
            return Err(TraceError::BadMagic);
        }
        d.at = 4;
        let version = d.byte()?;
        if version != VERSION {
            return Err(TraceError::BadVersion(version));
        }
        let mut h = Header { mode: d.byte()?, cpuid: heapless::Vec::new() };
        let n = d.number(MAX_CPUID as u64)?;
        for _ in 0..n {
            let mut v = [0u32; 6];
            for x in &mut v {
                *x = d.number(u64::from(u32::MAX))? as u32;
            }
            let regs = CpuidRegs { eax: v[2], ebx: v[3], ecx: v[4], edx: v[5] };
            h.note(v[0], v[1], regs);
        }
        Ok((h, d))
    }

    /// Records decoded so far.
    pub fn records(&self) -> usize {
        self.index
    }

    /// Whether every byte was read.
    pub fn at_end(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8, TraceError> {
        let b = *self.bytes.get(self.at).ok_or(TraceError::Truncated { at: self.at })?;
        self.at = self.at.saturating_add(1);
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, TraceError> {
        let start = self.at;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(TraceError::BadNumber { at: start });
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(TraceError::BadNumber { at: start })
    }

    fn number(&mut self, max: u64) -> Result<u64, TraceError> {
        let at = self.at;
        let v = self.varint()?;
        if v > max {
            return Err(TraceError::BadNumber { at });
        }
        Ok(v)
    }

    fn record(&mut self) -> Result<Record, TraceError> {
        let n = self.number(ExitMessage::SIZE as u64)? as usize;
        let mut changed = [0u8; ExitMessage::SIZE.div_ceil(8)];
        for c in changed.iter_mut().take(n.div_ceil(8)) {
            *c = self.byte()?;
        }
        let mut words = self.prev;
        for (i, w) in words.iter_mut().enumerate().take(n) {
            if changed.get(i / 8).is_some_and(|c| c & (1 << (i % 8)) != 0) {
                *w ^= self.varint()?;
            }
        }
        self.prev = words;
        let record = self.index;
        let exit = ExitMessage::from_words(words.get(..n).unwrap_or_default())
            .map_err(|error| TraceError::BadExit { record, error })?;
        let reply_len = self.number(ExitReply::SIZE as u64)? as usize;
        let mut reply = [0u64; ExitReply::SIZE];
        for w in reply.iter_mut().take(reply_len) {
            *w = self.varint()?;
        }
        Ok(Record { exit, reply, reply_len })
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<Record, TraceError>;

    /// The next record; after an error, nothing more.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at_end() {
            return None;
        }
        let r = self.record();
        match r {
            Ok(_) => self.index = self.index.saturating_add(1),
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

/// Where a replay first disagreed with the recording. It carries both replies whole
/// (large, but made once per replay, never on the exit path).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The trace does not decode.
    Trace(TraceError),
    /// Record `record`'s reply differs.
    Mismatch {
        /// Record index.
        record: usize,
        /// The exit.
        exit: ExitMessage,
        /// What the VMM replied then.
        recorded: Record,
        /// What it replies now (wire words, `replayed_len` of them).
        replayed: [u64; ExitReply::SIZE],
        /// How many replayed words.
        replayed_len: usize,
    },
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Trace(e) => write!(f, "{e}"),
            Self::Mismatch { record, exit, recorded, replayed, replayed_len } => {
                let reason = exit.basic_reason().map_or("unknown", |r| r.name());
                write!(
                    f,
                    "exit #{record} ({reason} at rip {:#x}): recorded reply {:x?}, replayed {:x?}",
                    exit.rip,
                    recorded.reply_words(),
                    replayed.get(..*replayed_len).unwrap_or_default()
                )
            }
        }
    }
}

/// Replay every record of `decoder` against `vm` (built from `serve::config` for the
/// header's mode and its CPUID answers), as the VMM's exit loop would: each reply must
/// equal the recorded one, word for word. Returns the number of exits replayed.
#[allow(clippy::result_large_err)] // See `ReplayError`: one error per replay.
pub fn replay<M: GuestMemory, S: SerialSink>(
    vm: &mut Vm<M, S>,
    decoder: Decoder<'_>,
) -> Result<usize, ReplayError> {
    let mut count = 0;
    for (i, record) in decoder.enumerate() {
        let record = record.map_err(ReplayError::Trace)?;
        let reply = crate::serve::answer(vm, &record.exit, i == 0);
        let mut replayed = [0u64; ExitReply::SIZE];
        let replayed_len = reply.to_words(&mut replayed).min(ExitReply::SIZE);
        if replayed.get(..replayed_len) != Some(record.reply_words()) {
            return Err(ReplayError::Mismatch {
                record: i,
                exit: record.exit,
                recorded: record,
                replayed,
                replayed_len,
            });
        }
        count = i.saturating_add(1);
    }
    Ok(count)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 of `input` (with `=` padding) into `out`; returns the length, or
/// `None` if `out` is too short.
pub fn base64_encode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let need = input.len().div_ceil(3).checked_mul(4)?;
    let out = out.get_mut(..need)?;
    for (chunk, dst) in input.chunks(3).zip(out.chunks_mut(4)) {
        let b = [chunk.first(), chunk.get(1), chunk.get(2)].map(|b| b.copied().unwrap_or(0));
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, (d, shift)) in dst.iter_mut().zip([18u32, 12, 6, 0]).enumerate() {
            let sextet = (v >> shift) & 0x3f;
            *d = if i <= chunk.len() {
                BASE64.get(sextet as usize).copied().unwrap_or(b'=')
            } else {
                b'='
            };
        }
    }
    Some(need)
}

/// Decode standard base64 (padding optional) into `out`; returns the length, or `None`
/// for a character outside the alphabet, a stray `=`, or an `out` too short.
pub fn base64_decode(text: &[u8], out: &mut [u8]) -> Option<usize> {
    let body = match text.iter().position(|c| *c == b'=') {
        Some(p)
            if text.get(p..)?.iter().all(|c| *c == b'=') && text.len() <= p.saturating_add(2) =>
        {
            text.get(..p)?
        }
        Some(_) => return None,
        None => text,
    };
    let mut len = 0;
    for chunk in body.chunks(4) {
        let mut v = 0u32;
        for (c, shift) in chunk.iter().zip([18u32, 12, 6, 0]) {
            let sextet = BASE64.iter().position(|b| b == c)? as u32;
            v |= sextet << shift;
        }
        let bytes = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for shift in [16u32, 8, 0].into_iter().take(bytes) {
            *out.get_mut(len)? = (v >> shift) as u8;
            len = len.checked_add(1)?;
        }
    }
    Some(len)
}

/// FNV-1a over 32 bits: the end line's check that no log line was lost or garbled.
pub const fn fnv1a(hash: u32, byte: u8) -> u32 {
    (hash ^ byte as u32).wrapping_mul(0x0100_0193)
}

/// The FNV-1a hash's starting value.
pub const FNV_START: u32 = 0x811c_9dc5;

/// Turns a trace's bytes into console lines as they come: `emit` gets each whole line
/// (without the newline).
pub struct LineWriter<F: FnMut(&str)> {
    buf: [u8; LINE_BYTES],
    len: usize,
    bytes: u64,
    hash: u32,
    emit: F,
}

impl<F: FnMut(&str)> LineWriter<F> {
    /// Start a trace: emits the begin line.
    pub fn new(mut emit: F) -> Self {
        emit("trace: begin");
        Self { buf: [0; LINE_BYTES], len: 0, bytes: 0, hash: FNV_START, emit }
    }

    /// Add one byte of the trace.
    pub fn push(&mut self, byte: u8) {
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = byte;
            self.len = self.len.saturating_add(1);
        }
        self.bytes = self.bytes.saturating_add(1);
        self.hash = fnv1a(self.hash, byte);
        if self.len == LINE_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        let mut line = [0u8; LINE_PREFIX.len() + LINE_BYTES / 3 * 4];
        let (prefix, rest) = line.split_at_mut(LINE_PREFIX.len());
        prefix.copy_from_slice(LINE_PREFIX.as_bytes());
        let n = base64_encode(self.buf.get(..self.len).unwrap_or_default(), rest).unwrap_or(0);
        if let Ok(text) = core::str::from_utf8(
            line.get(..LINE_PREFIX.len().saturating_add(n)).unwrap_or_default(),
        ) {
            (self.emit)(text);
        }
        self.len = 0;
    }

    /// End the trace after `records` records: the last data line and the end line
    /// (`trace: end <records> <bytes> <fnv1a32>`), which `emit` formats.
    pub fn finish(mut self, records: u64, mut end: impl FnMut(u64, u64, u32)) {
        self.flush();
        end(records, self.bytes, self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        base64_decode, base64_encode, replay, CpuidEntry, Decoder, Encoder, Header, LineWriter,
        ReplayError, TraceError,
    };
    use crate::cpuid::CpuidRegs;
    use crate::devices::uart16550::SerialSink;
    use crate::dispatch::Vm;
    use crate::guest_memory::SliceMemory;
    use crate::serve::{answer, config};
    use protocols::object::vcpu_mode;
    use protocols::vmexit::{ExitMessage, ExitReason, TransferMask};

    struct Null;
    impl SerialSink for Null {
        fn write_byte(&mut self, _: u8) {}
    }

    fn header() -> Header {
        let mut h = Header { mode: vcpu_mode::PROTECTED32 as u8, ..Header::default() };
        h.note(0, 0, CpuidRegs { eax: 0xd, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69 });
        h.note(1, 0, CpuidRegs { eax: 0x906ea, ebx: 0x800, ecx: 0x7ffa_fbff, edx: 0xbfeb_fbff });
        h
    }

    fn exits() -> Vec<ExitMessage> {
        let base = ExitMessage {
            instruction_len: 2,
            rip: 0x10_0000,
            rflags: 0x202,
            cr0: 0x11,
            transfer: Vm::<SliceMemory<'_>, Null>::TRANSFER_MASK.union(TransferMask::SYSENTER),
            ..ExitMessage::default()
        };
        let mut v = Vec::new();
        for i in 0..20u64 {
            let mut m = base;
            m.reason =
                if i % 3 == 0 { ExitReason::Cpuid } else { ExitReason::IoInstruction } as u32;
            m.qualification = if i % 3 == 0 { 0 } else { 0x3f8 << 16 };
            m.rip += 2 * i;
            m.gprs.regs[0] = i;
            v.push(m);
        }
        v
    }

    /// Record `exits` as the VMM would, answering with `answer`.
    fn record(h: &Header, exits: &[ExitMessage]) -> Vec<u8> {
        let mut ram = vec![0u8; 0x1000];
        let mut vm = Vm::new(
            &config(u64::from(h.mode)),
            |l, s| h.host_cpuid(l, s),
            SliceMemory::new(0, &mut ram),
            Null,
        )
        .unwrap();
        let mut bytes = Vec::new();
        h.encode(&mut |b| bytes.push(b));
        let mut e = Encoder::new();
        for (i, m) in exits.iter().enumerate() {
            let r = answer(&mut vm, m, i == 0);
            e.record(m, &r, &mut |b| bytes.push(b));
        }
        bytes
    }

    #[test]
    fn a_recording_decodes_and_replays_exactly() {
        let h = header();
        let bytes = record(&h, &exits());
        assert!(bytes.len() < 20 * 60, "deltas keep records small: {} bytes", bytes.len());
        let (decoded, d) = Decoder::new(&bytes).unwrap();
        assert_eq!(decoded, h);
        let records: Vec<_> = d.map(Result::unwrap).collect();
        assert_eq!(records.iter().map(|r| r.exit).collect::<Vec<_>>(), exits());
        let mut ram = vec![0u8; 0x1000];
        let mut vm = Vm::new(
            &config(u64::from(h.mode)),
            |l, s| h.host_cpuid(l, s),
            SliceMemory::new(0, &mut ram),
            Null,
        )
        .unwrap();
        let (_, d) = Decoder::new(&bytes).unwrap();
        assert_eq!(replay(&mut vm, d), Ok(20));
    }

    #[test]
    fn a_changed_reply_is_a_mismatch_naming_the_exit() {
        let h = header();
        let bytes = record(&h, &exits());
        // A different host CPUID at replay: the first CPUID exit answers differently.
        let mut other = h.clone();
        other.cpuid[0] = CpuidEntry {
            leaf: 0,
            subleaf: 0,
            regs: CpuidRegs { eax: 0xd, ..CpuidRegs::default() },
        };
        let mut ram = vec![0u8; 0x1000];
        let mut vm = Vm::new(
            &config(u64::from(h.mode)),
            |l, s| other.host_cpuid(l, s),
            SliceMemory::new(0, &mut ram),
            Null,
        )
        .unwrap();
        let (_, d) = Decoder::new(&bytes).unwrap();
        match replay(&mut vm, d) {
            Err(ReplayError::Mismatch { record, .. }) => assert_eq!(record, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damaged_traces_are_errors() {
        let bytes = record(&header(), &exits());
        assert_eq!(Decoder::new(b"VMTX").err(), Some(TraceError::BadMagic));
        assert_eq!(Decoder::new(b"VMTR\x09").err(), Some(TraceError::BadVersion(9)));
        for cut in 0..bytes.len() {
            // Every prefix decodes as far as it goes, then stops with an error.
            if let Ok((_, d)) = Decoder::new(&bytes[..cut]) {
                let _ = d.count();
            }
        }
        // A CPUID count whose varint runs past 64 bits.
        let mut t = bytes[..4].to_vec();
        t.extend_from_slice(&[1, 1]);
        t.extend_from_slice(&[0xff; 11]);
        assert!(matches!(Decoder::new(&t), Err(TraceError::BadNumber { .. })));
    }

    #[test]
    fn base64_round_trips_and_refuses_garbage() {
        for len in 0..20 {
            let input: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut text = [0u8; 32];
            let n = base64_encode(&input, &mut text).unwrap();
            let mut back = [0u8; 20];
            let m = base64_decode(&text[..n], &mut back).unwrap();
            assert_eq!(&back[..m], &input[..]);
        }
        let mut text = [0u8; 8];
        let n = base64_encode(b"hi!", &mut text).unwrap();
        assert_eq!(&text[..n], b"aGkh");
        let mut out = [0u8; 8];
        assert_eq!(base64_decode(b"a*==", &mut out), None);
        assert_eq!(base64_decode(b"a=b=", &mut out), None);
        assert_eq!(base64_decode(b"a", &mut out), None);
    }

    #[test]
    fn lines_carry_the_bytes_and_a_checksum() {
        let mut lines = Vec::new();
        let mut w = LineWriter::new(|l: &str| lines.push(l.to_string()));
        for b in 0..100u8 {
            w.push(b);
        }
        let mut end = None;
        w.finish(3, |r, n, h| end = Some((r, n, h)));
        assert_eq!(lines.first().map(String::as_str), Some("trace: begin"));
        assert_eq!(lines.len(), 1 + 3, "48 + 48 + 4 bytes");
        let mut all = Vec::new();
        for l in &lines[1..] {
            let mut buf = [0u8; 64];
            let n = base64_decode(l.strip_prefix("trace: ").unwrap().as_bytes(), &mut buf).unwrap();
            all.extend_from_slice(&buf[..n]);
        }
        assert_eq!(all, (0..100u8).collect::<Vec<_>>());
        let (records, n, hash) = end.unwrap();
        assert_eq!((records, n), (3, 100));
        assert_eq!(hash, all.iter().fold(super::FNV_START, |h, b| super::fnv1a(h, *b)));
    }
}
