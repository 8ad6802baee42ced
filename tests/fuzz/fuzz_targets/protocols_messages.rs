//! Fuzzes every decoder in `protocols` that takes untrusted words or bytes: the syscall
//! ABI scalars, the IPC message-info word, kernel-object labels, VMCS field encodings,
//! exit reasons, the VM-exit message, the VMM's reply batch, the batch error, what the
//! kernel tells a supervisor instead of printing it (fault and exit messages, a refused
//! vCPU start, a VMX failure), the serial test-log lines the host harness reads, and the
//! system manifest the root task decodes.
//!
//! Invariants: no decoder panics; whatever a decoder accepts re-encodes to exactly the
//! input (the wire formats have one encoding per value, so a lenient decoder would let two
//! parties disagree about a message); decode(encode(x)) == x for values built through the
//! public constructors; a refused message names an offending word that really has the
//! offending bits; a reply builder that refuses a step leaves the reply unchanged; and a
//! manifest that decodes passes its own check and re-encodes, no longer, to the same
//! manifest (postcard ignores trailing bytes, so byte equality is not asked).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use protocols::error::{check, Error as SysError};
use protocols::fault::{FaultMessage, EXIT_LABEL, FAULT_LABEL};
use protocols::ipc::{MsgInfo, MAX_LABEL, MAX_LEN};
use protocols::manifest::Manifest;
use protocols::object::{Invocation, ObjectType};
use protocols::rights::Rights;
use protocols::syscall::{ShutdownStatus, Syscall};
use protocols::testlog::{
    parse_line, parse_summary, Outcome, FAIL_PREFIX, PASS_PREFIX, SKIP_PREFIX,
};
use protocols::vcpu_start::StartError;
use protocols::vmcs::{Field, FieldClass, Width};
use protocols::vmexit::{
    BatchError, EventInjection, EventType, ExitMessage, ExitReason, ExitReply, ReplyFlags,
    TransferMask, WireError, MAX_WRITES,
};
use protocols::vmx_failure::{VmxFailure, VmxInstruction};

#[derive(Arbitrary, Debug)]
enum ReplyOp {
    /// A write of a known field (an index into `Field::ALL`).
    Write {
        field: u16,
        value: u64,
    },
    WriteRaw {
        field: u32,
        value: u64,
    },
    SetGpr {
        reg: u8,
        value: u64,
    },
    Inject {
        info: u32,
        error: u32,
        len: u32,
    },
}

#[derive(Arbitrary, Debug)]
enum Case {
    Scalars {
        r64: u64,
        r32: u32,
        r16: u16,
        r8: u8,
        other8: u8,
    },
    ExitMessageWords(Vec<u64>),
    /// Words shaped like a message (valid mask, right length) so decoding gets deep.
    ExitMessageShaped {
        mask: u16,
        words: Vec<u64>,
    },
    ExitReplyWords(Vec<u64>),
    ExitReplyBuilt {
        flags: u32,
        ops: Vec<ReplyOp>,
    },
    BatchErrorWords(Vec<u64>),
    BatchErrorBuilt {
        code: u8,
        arg: u32,
        value: u64,
        bits: u64,
    },
    TestLogLine(String),
    TestLogBuilt {
        name: String,
        why: String,
        passed: u32,
        failed: u32,
    },
    MsgInfoBuilt {
        label: u64,
        len: u8,
        grant: bool,
    },
    ManifestBytes(Vec<u8>),
    /// Words of a kernel notice: `pick` chooses the fault label, the exit label or `label`.
    KernelNotice {
        pick: u8,
        label: u64,
        words: [u64; 4],
    },
}

fn scalars(r64: u64, r32: u32, r16: u16, r8: u8, other8: u8) {
    if let Some(e) = SysError::from_raw(r64) {
        assert_eq!(e as u64, r64);
        assert!(!e.name().is_empty());
    }
    match check(r64) {
        Ok(()) => assert_eq!(r64, 0),
        Err(raw) => {
            assert_eq!(raw.0, r64);
            assert_eq!(raw.error(), SysError::from_raw(r64));
        }
    }
    if let Some(s) = Syscall::from_raw(r64) {
        assert_eq!(s as u64, r64);
    }
    if let Some(s) = ShutdownStatus::from_raw(r64) {
        assert_eq!(s as u64, r64);
    }
    if let Some(t) = ObjectType::from_raw(r64) {
        assert_eq!(t as u64, r64);
    }
    if let Some(i) = Invocation::from_raw(r64) {
        assert_eq!(i as u64, r64);
    }
    if let Some(m) = MsgInfo::from_raw(r64) {
        assert!(usize::from(m.len) <= MAX_LEN && m.label <= MAX_LABEL);
        assert_eq!(m.to_raw(), r64, "MsgInfo decoding is not one-to-one");
    }
    // Rights: decoding is exact and derivation never widens.
    match (Rights::from_bits(r8), Rights::from_bits(other8)) {
        (Some(a), Some(b)) => {
            assert_eq!((a.bits(), b.bits()), (r8, other8));
            let c = a.intersect(b);
            assert!(a.contains(c) && b.contains(c) && Rights::ALL.contains(a));
        }
        (a, _) => assert!(a.is_some() || r8 & !Rights::ALL.bits() != 0),
    }
    if let Some(f) = Field::from_raw(r32) {
        assert_eq!(f.encoding(), r32);
        assert_eq!(r32 & 1, 0, "a 'high' alias decoded as a field");
        let width = match (r32 >> 13) & 3 {
            0 => Width::Bits16,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        };
        assert_eq!(f.width(), width);
        let writable = matches!(f.class(), FieldClass::Control | FieldClass::GuestState);
        assert_eq!(f.vmm_writable(), writable);
        assert!(f.to_string().contains(f.name()));
    }
    if let Some(r) = ExitReason::from_raw(r16) {
        assert_eq!(r as u16, r16);
        assert!(!r.name().is_empty());
    }
    match EventType::from_raw(r8) {
        Some(t) => assert_eq!(t as u8, r8),
        None => assert!(r8 == 1 || r8 > 7, "event type {r8} refused"),
    }
    let ev = EventInjection::from_raw(r32);
    assert_eq!((ev.raw(), ev.vector()), (r32, r32 as u8));
    assert_eq!(ev.is_valid(), r32 & EventInjection::VALID != 0);
    assert_eq!(ev.event_type(), EventType::from_raw((r32 >> 8) as u8 & 7));
    if let Some(t) = TransferMask::from_bits(r64) {
        assert_eq!(t.bits(), r64);
        assert!(t.extra_words() <= ExitMessage::SIZE - ExitMessage::BASE_WORDS);
    }
    if let Some(f) = ReplyFlags::from_bits(r32) {
        assert_eq!(f.bits(), r32);
    }
}

/// Decode exit-message words; on success they must re-encode to themselves.
fn exit_message(words: &[u64]) -> Result<ExitMessage, WireError> {
    let m = ExitMessage::from_words(words)?;
    assert_eq!(m.wire_len(), words.len());
    let mut out = [0u64; ExitMessage::SIZE];
    let n = m.to_words(&mut out);
    assert_eq!(n, m.wire_len());
    assert_eq!(&out[..n], words, "an accepted exit message does not re-encode to its words");
    assert_eq!(ExitMessage::from_words(&out[..n]), Ok(m));
    assert_eq!(m.basic_reason(), ExitReason::from_raw(m.reason as u16));
    Ok(m)
}

fn exit_message_words(words: &[u64]) {
    match exit_message(words) {
        Ok(_) => {}
        Err(WireError::BadLength { expected, got }) => {
            assert_eq!(got, words.len());
            assert_ne!(expected, got);
        }
        Err(WireError::ReservedBits { word, bits }) => {
            assert_ne!(bits, 0);
            assert_eq!(words[word] & bits, bits, "the reported reserved bits are not set");
        }
    }
}

fn exit_message_shaped(mask: u16, mut words: Vec<u64>) {
    let mask = u64::from(mask) & TransferMask::ALL.bits();
    let len = ExitMessage::BASE_WORDS
        + TransferMask::from_bits(mask).map_or(0, TransferMask::extra_words);
    words.resize(len, 0);
    words[ExitMessage::TRANSFER_WORD] = mask;
    // Clear what the decoder reports as reserved until it accepts: each report must
    // name bits that are set, and there are at most three such words.
    for _ in 0..=3 {
        match exit_message(&words) {
            Ok(_) => return,
            Err(WireError::ReservedBits { word, bits }) => {
                assert_eq!(words[word] & bits, bits, "the reported reserved bits are not set");
                words[word] &= !bits;
            }
            Err(e) => panic!("a message of the right length refused: {e}"),
        }
    }
    panic!("the decoder keeps reporting reserved bits");
}

/// Decode reply words; on success they must re-encode to themselves.
fn exit_reply_words(words: &[u64]) {
    let Ok(r) = ExitReply::from_words(words) else { return };
    assert!(r.count as usize <= MAX_WRITES);
    assert_eq!(r.writes().len(), r.count as usize);
    assert_eq!(r.wire_len(), words.len());
    if !r.flags.contains(ReplyFlags::INJECT_EVENT) {
        assert_eq!(r.injection, EventInjection::NONE);
    }
    let mut out = [0u64; ExitReply::SIZE];
    let n = r.to_words(&mut out);
    assert_eq!(&out[..n], words, "an accepted reply does not re-encode to its words");
}

fn exit_reply_built(flags: u32, ops: &[ReplyOp]) {
    let mut r = ExitReply::new();
    for op in ops.iter().take(64) {
        let before = r;
        let result = match *op {
            ReplyOp::Write { field, value } => {
                let f = Field::ALL[usize::from(field) % Field::ALL.len()];
                r.write(f, value)
            }
            ReplyOp::WriteRaw { field, value } => r.write_raw(field, value),
            ReplyOp::SetGpr { reg, value } => {
                let res = r.set_gpr(reg, value);
                assert_eq!(res.is_ok(), reg < 16);
                res
            }
            ReplyOp::Inject { info, error, len } => {
                r.inject(EventInjection::from_raw(info), error, len);
                assert!(r.flags.contains(ReplyFlags::INJECT_EVENT));
                Ok(())
            }
        };
        if result.is_err() {
            assert_eq!(r, before, "a refused builder step changed the reply");
        }
        assert!(r.count as usize <= MAX_WRITES);
    }
    r.flags |= ReplyFlags::from_bits(flags & ReplyFlags::ALL.bits()).unwrap_or_default();
    // A fault address goes only with an injected #PF (then it is the flags' bits, any
    // value will do); a built reply is a well-formed one.
    if r.flags.contains(ReplyFlags::PAGE_FAULT_ADDRESS) {
        if ExitReply::check_fault_address(r.flags, r.injection).is_ok() {
            r.fault_address = u64::from(flags).rotate_left(29);
        } else {
            r.flags =
                ReplyFlags::from_bits(r.flags.bits() & !ReplyFlags::PAGE_FAULT_ADDRESS.bits())
                    .unwrap_or_default();
        }
    }
    let mut out = [0u64; ExitReply::SIZE];
    let n = r.to_words(&mut out);
    assert_eq!(n, r.wire_len());
    assert_eq!(ExitReply::from_words(&out[..n]), Ok(r), "a built reply does not round-trip");
    exit_reply_words(&out[..n]);
    // One word short or long is refused.
    assert!(ExitReply::from_words(&out[..n - 1]).is_err(), "a short reply accepted");
    if n < ExitReply::SIZE {
        assert!(ExitReply::from_words(&out[..=n]).is_err(), "a long reply accepted");
    }
}

fn batch_error_words(words: &[u64]) {
    let Some(e) = BatchError::from_words(words) else { return };
    assert_eq!(e.to_words().as_slice(), words, "an accepted batch error is not canonical");
    assert_eq!(u64::from(e.code()), words[0] & 0xffff_ffff);
    assert!(!e.name().is_empty() && !e.to_string().is_empty());
}

fn batch_error_built(code: u8, arg: u32, value: u64, bits: u64) {
    let e = match code % 14 {
        0 => BatchError::FieldNotWritable { field: arg },
        1 => BatchError::UnknownField { raw: arg },
        2 => BatchError::ControlBitsRejected { field: arg, value, bits },
        3 => BatchError::ControlPolicy { field: arg, value, bits },
        4 => BatchError::TooManyWrites { count: arg },
        5 => BatchError::BadGprMask { mask: value },
        6 => BatchError::BadInjection { info: arg },
        7 => BatchError::InvalidGuestState { field: arg },
        8 => BatchError::ValueTooWide { field: arg, value },
        9 => BatchError::DuplicateField { field: arg },
        10 => BatchError::BadFlags { flags: arg },
        11 => BatchError::BadLength { expected: arg, got: value as u32 },
        12 => BatchError::Liveness { field: arg, value },
        _ => BatchError::ReservedBits { word: arg, bits },
    };
    let words = e.to_words();
    assert_eq!(BatchError::from_words(&words), Some(e), "{e:?} does not round-trip");
    if let Some(field) = e.field() {
        // A refused injection names the field that holds the event, not the event.
        let named = if matches!(e, BatchError::BadInjection { .. }) {
            Field::EntryInterruptionInfo as u32
        } else {
            arg
        };
        assert_eq!(field, named);
    }
    assert_eq!(BatchError::name_of(e.code()), e.name());
    batch_error_words(&words);
}

/// The decoders of what the kernel reports instead of printing accept only what they
/// re-encode to.
fn kernel_notice(pick: u8, label: u64, words: [u64; 4]) {
    let label = [FAULT_LABEL, EXIT_LABEL, label][usize::from(pick % 3)];
    if let Some(m) = FaultMessage::decode(label, words) {
        let (l, len, w) = m.encode();
        let n = usize::from(len);
        // Words past the length arrive as 0 and carry nothing.
        assert_eq!((l, &w[..n]), (label, &words[..n]), "a fault-endpoint message changed");
    }
    let start = [words[0], words[1], words[2]];
    if let Some(e) = StartError::from_words(start) {
        assert_eq!(e.to_words(), start, "an accepted start error is not canonical");
        assert_eq!(e.code(), start[0]);
        assert!(!e.to_string().is_empty());
    }
    if let Some(f) = VmxFailure::from_words(words) {
        assert_eq!(f.to_words(), words, "an accepted VMX failure is not canonical");
        assert_eq!(f.field.is_some(), f.instruction == VmxInstruction::Vmwrite);
        assert!(!f.to_string().is_empty());
    }
}

fn test_log_line(line: &str) {
    let trimmed = line.trim_end();
    match parse_line(line) {
        Some(Outcome::Pass(name)) => assert_eq!(trimmed, format!("{PASS_PREFIX}{name}")),
        Some(Outcome::Fail(name, why) | Outcome::Skip(name, why)) => {
            let rest = trimmed
                .strip_prefix(FAIL_PREFIX)
                .or_else(|| trimmed.strip_prefix(SKIP_PREFIX))
                .expect("FAIL or SKIP without its prefix");
            let rebuilt = if why.is_empty() && !rest.contains(": ") {
                name.to_string()
            } else {
                format!("{name}: {why}")
            };
            assert_eq!(rest, rebuilt);
            assert!(!name.contains(": "), "a FAIL name that holds the separator");
        }
        None => assert!(
            !trimmed.starts_with(PASS_PREFIX)
                && !trimmed.starts_with(FAIL_PREFIX)
                && !trimmed.starts_with(SKIP_PREFIX)
        ),
    }
    if let Some((p, f, s)) = parse_summary(line) {
        let again = parse_summary(&format!("{p} passed, {f} failed, {s} skipped"));
        assert_eq!(again, Some((p, f, s)));
    }
}

fn test_log_built(name: &str, why: &str, passed: u32, failed: u32) {
    assert_eq!(
        parse_summary(&format!("{passed} passed, {failed} failed")),
        Some((passed, failed, 0))
    );
    assert_eq!(
        parse_summary(&format!("{passed} passed, {failed} failed, {failed} skipped")),
        Some((passed, failed, failed))
    );
    let name = name.trim_end();
    let why = why.trim_end();
    // A name holding the separator, or an empty reason, has no unambiguous line; an empty
    // PASS name leaves only the trimmed prefix, which is no test line.
    if name.contains(": ") || why.is_empty() {
        return;
    }
    if !name.is_empty() {
        assert_eq!(parse_line(&format!("{PASS_PREFIX}{name}\r\n")), Some(Outcome::Pass(name)));
    }
    assert_eq!(parse_line(&format!("{FAIL_PREFIX}{name}: {why}")), Some(Outcome::Fail(name, why)));
    assert_eq!(parse_line(&format!("{SKIP_PREFIX}{name}: {why}")), Some(Outcome::Skip(name, why)));
}

fn manifest_bytes(bytes: &[u8]) {
    match Manifest::decode(bytes) {
        Ok(m) => {
            assert_eq!(m.check(), Ok(()), "a decoded manifest fails its own check");
            let mut buf = vec![0u8; bytes.len()];
            let out = postcard::to_slice(&m, &mut buf).expect("re-encoding a manifest grew it");
            assert_eq!(Manifest::decode(out), Ok(m), "a manifest does not round-trip");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|case: Case| match case {
    Case::Scalars { r64, r32, r16, r8, other8 } => scalars(r64, r32, r16, r8, other8),
    Case::ExitMessageWords(words) => exit_message_words(&words),
    Case::ExitMessageShaped { mask, words } => exit_message_shaped(mask, words),
    Case::ExitReplyWords(words) => exit_reply_words(&words),
    Case::ExitReplyBuilt { flags, ops } => exit_reply_built(flags, &ops),
    Case::BatchErrorWords(words) => batch_error_words(&words),
    Case::BatchErrorBuilt { code, arg, value, bits } => batch_error_built(code, arg, value, bits),
    Case::TestLogLine(line) => test_log_line(&line),
    Case::TestLogBuilt { name, why, passed, failed } => {
        test_log_built(&name, &why, passed, failed);
    }
    Case::MsgInfoBuilt { label, len, grant } => {
        let m = MsgInfo { label: label & MAX_LABEL, len: len % (MAX_LEN as u8 + 1), grant };
        assert_eq!(MsgInfo::from_raw(m.to_raw()), Some(m), "{m:?} does not round-trip");
    }
    Case::ManifestBytes(bytes) => manifest_bytes(&bytes),
    Case::KernelNotice { pick, label, words } => kernel_notice(pick, label, words),
});
