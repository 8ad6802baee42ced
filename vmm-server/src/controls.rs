//! VMCS control writes the VMM makes on a guest's behalf: RDTSC exiting and the TSC
//! offset, CR3-load exiting and the CR3-target values, the exception bitmap with the #PF
//! error-code mask and match (driven by the test hypercalls, see [`crate::hypercall`]).
//!
//! A primary-controls write starts from the value the exit message carries (the
//! `CONTROLS` group), so it changes only the bits named; every write is checked again by
//! the kernel's batch validator, which refuses anything the CPU or the kernel's policy
//! does not allow (a CR3-target count above the CPU's, say).

use protocols::vmcs::ctl::proc;
use protocols::vmcs::{Field, ALWAYS_INTERCEPTED_EXCEPTIONS};
use protocols::vmexit::{ExitMessage, TransferMask};

use crate::hypercall::MAX_CR3_TARGETS;
use crate::reply::ReplyBuilder;

/// The CR3-target value fields, in order.
const CR3_TARGETS: [Field; MAX_CR3_TARGETS] =
    [Field::Cr3Target0, Field::Cr3Target1, Field::Cr3Target2, Field::Cr3Target3];

/// Set (`on`) or clear `bits` of the primary processor-based controls. Needs the exit
/// message's `CONTROLS` group (`Err` names it otherwise).
fn primary(
    msg: &ExitMessage,
    bits: u32,
    on: bool,
    reply: &mut ReplyBuilder,
) -> Result<(), TransferMask> {
    if !msg.transfer.contains(TransferMask::CONTROLS) {
        return Err(TransferMask::CONTROLS);
    }
    let now = msg.controls.proc;
    let value = if on { now | bits } else { now & !bits };
    reply.write(Field::ProcBasedControls, value.into());
    Ok(())
}

/// RDTSC exiting on or off.
pub fn rdtsc_exiting(
    msg: &ExitMessage,
    on: bool,
    reply: &mut ReplyBuilder,
) -> Result<(), TransferMask> {
    primary(msg, proc::RDTSC_EXITING, on, reply)
}

/// TSC offsetting with `offset` (0 turns it off).
pub fn tsc_offset(
    msg: &ExitMessage,
    offset: u64,
    reply: &mut ReplyBuilder,
) -> Result<(), TransferMask> {
    primary(msg, proc::USE_TSC_OFFSETTING, offset != 0, reply)?;
    reply.write(Field::TscOffset, offset);
    Ok(())
}

/// CR3-load exiting on or off, with the first `count` of `values` as CR3-target values
/// (a MOV to CR3 of one of them does not exit). `count` is at most [`MAX_CR3_TARGETS`].
pub fn cr3_targets(
    msg: &ExitMessage,
    exiting: bool,
    values: &[u64],
    reply: &mut ReplyBuilder,
) -> Result<(), TransferMask> {
    primary(msg, proc::CR3_LOAD_EXITING, exiting, reply)?;
    reply.write(Field::Cr3TargetCount, values.len() as u64);
    for (field, value) in CR3_TARGETS.iter().zip(values) {
        reply.write(*field, *value);
    }
    Ok(())
}

/// The exception bitmap and the #PF error-code mask and match: a #PF exits when
/// `(error code & mask) == matching` and bit 14 is set, or when they differ and it is
/// clear (SDM 26.2). #DB and #AC stay intercepted whatever `bitmap` says: the kernel
/// refuses a bitmap without them.
pub fn exception_bitmap(bitmap: u32, mask: u32, matching: u32, reply: &mut ReplyBuilder) {
    reply.write(Field::ExceptionBitmap, (bitmap | ALWAYS_INTERCEPTED_EXCEPTIONS).into());
    reply.write(Field::PageFaultErrorCodeMask, mask.into());
    reply.write(Field::PageFaultErrorCodeMatch, matching.into());
}

#[cfg(test)]
mod tests {
    use super::{cr3_targets, exception_bitmap, rdtsc_exiting, tsc_offset};
    use crate::reply::ReplyBuilder;
    use protocols::vmcs::ctl::proc;
    use protocols::vmcs::Field;
    use protocols::vmexit::ExitReply;
    use protocols::vmexit::{ExitMessage, TransferMask};

    fn msg(proc: u32) -> ExitMessage {
        let mut m = ExitMessage { transfer: TransferMask::CONTROLS, ..Default::default() };
        m.controls.proc = proc;
        m
    }

    fn writes(r: &ReplyBuilder) -> Vec<(Field, u64)> {
        r.reply().writes().iter().map(|w| (Field::from_raw(w.field).unwrap(), w.value)).collect()
    }

    #[test]
    fn primary_controls_change_only_the_named_bits() {
        let base = proc::HLT_EXITING | proc::USE_IO_BITMAPS;
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        rdtsc_exiting(&msg(base), true, &mut r).unwrap();
        assert_eq!(writes(&r), [(Field::ProcBasedControls, (base | proc::RDTSC_EXITING).into())]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        rdtsc_exiting(&msg(base | proc::RDTSC_EXITING), false, &mut r).unwrap();
        assert_eq!(writes(&r), [(Field::ProcBasedControls, base.into())]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        tsc_offset(&msg(base), 1 << 40, &mut r).unwrap();
        let offsetting = (base | proc::USE_TSC_OFFSETTING).into();
        assert_eq!(
            writes(&r),
            [(Field::ProcBasedControls, offsetting), (Field::TscOffset, 1 << 40)]
        );
        let without = ExitMessage::default();
        assert_eq!(rdtsc_exiting(&without, true, &mut r), Err(TransferMask::CONTROLS));
    }

    #[test]
    fn cr3_targets_and_the_exception_bitmap() {
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        cr3_targets(&msg(0), true, &[0x10_0000], &mut r).unwrap();
        assert_eq!(
            writes(&r),
            [
                (Field::ProcBasedControls, proc::CR3_LOAD_EXITING.into()),
                (Field::Cr3TargetCount, 1),
                (Field::Cr3Target0, 0x10_0000),
            ]
        );
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        exception_bitmap(1 << 14, 2, 2, &mut r);
        assert_eq!(
            writes(&r),
            [
                (Field::ExceptionBitmap, 1 << 17 | 1 << 14 | 1 << 1),
                (Field::PageFaultErrorCodeMask, 2),
                (Field::PageFaultErrorCodeMatch, 2),
            ]
        );
    }
}
