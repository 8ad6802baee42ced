//! The vCPU state page: the message frame a VMM binds to its VCpu (`VCpuConfigure`),
//! where the exit and the reply travel in place, each written once.
//!
//! | offset | what | written by |
//! |---|---|---|
//! | 0 | [`ExitMessage`] | the kernel, at every exit |
//! | 2048 | [`ExitReply`] | the VMM, before it replies |
//! | 3072 | [`TransferTable`]: the groups to send per basic exit reason | the VMM, any time |
//! | 3712 | [`Clock`]: the host's TSC rate and VMX-preemption-timer rate | the kernel, at `VCpuConfigure` |
//!
//! No encoder or decoder runs on the exit path: the kernel writes VMREAD results and the
//! guest GPRs straight into the exit area, the VMM reads them there and writes its answer
//! into the reply area, and the kernel validates the reply reading each word once (what it
//! accepts is its own copy, which the VMM can no longer change). The structs are `Pod`, so
//! they have no padding and any bytes are a value of them; the views below check size and
//! alignment.

use bytemuck::{Pod, Zeroable};

use crate::vmexit::{ExitMessage, ExitReply, TransferMask};

/// Size of the page.
pub const PAGE_SIZE: usize = 4096;
/// Byte offset of the [`ExitMessage`].
pub const EXIT_OFFSET: usize = 0;
/// Byte offset of the [`ExitReply`].
pub const REPLY_OFFSET: usize = 2048;
/// Byte offset of the [`TransferTable`].
pub const TRANSFER_TABLE_OFFSET: usize = 3072;
/// Byte offset of the [`Clock`], right after the transfer table.
pub const CLOCK_OFFSET: usize = 3712;
/// Basic exit reasons the table covers (0-79); exits with a higher reason carry only the
/// VCpu's default groups.
pub const TABLE_REASONS: usize = 80;

const _: () = assert!(EXIT_OFFSET + size_of::<ExitMessage>() <= REPLY_OFFSET);
const _: () = assert!(REPLY_OFFSET + size_of::<ExitReply>() <= TRANSFER_TABLE_OFFSET);
const _: () = assert!(TRANSFER_TABLE_OFFSET + size_of::<TransferTable>() <= CLOCK_OFFSET);
const _: () = assert!(CLOCK_OFFSET + size_of::<Clock>() <= PAGE_SIZE);

/// What a VMM needs to keep guest time that the kernel alone can measure: the TSC's rate
/// (calibrated at boot against the PIT) and how the VMX-preemption timer relates to it.
/// The kernel writes it at `VCpuConfigure`; a VMM reads it once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Clock {
    /// TSC ticks per second; 0 when the kernel could not measure it.
    pub tsc_hz: u64,
    /// The preemption timer counts down once every 2^shift TSC ticks (IA32_VMX_MISC
    /// bits 4:0).
    pub preemption_timer_shift: u8,
    /// [`Clock::PREEMPTION_TIMER`], [`Clock::TSC_OFFSETTING`].
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 6],
}

impl Clock {
    /// `flags`: a VMM may turn on the VMX-preemption timer (pin-based control bit 6).
    pub const PREEMPTION_TIMER: u8 = 1 << 0;
    /// `flags`: a VMM may turn on TSC offsetting (primary processor-based bit 3).
    pub const TSC_OFFSETTING: u8 = 1 << 1;

    /// Whether the TSC rate is known.
    pub const fn known(&self) -> bool {
        self.tsc_hz != 0
    }

    /// Whether a VMM may arm the VMX-preemption timer.
    pub const fn has_preemption_timer(&self) -> bool {
        self.flags & Self::PREEMPTION_TIMER != 0
    }

    /// Whether a VMM may offset the guest's TSC.
    pub const fn has_tsc_offsetting(&self) -> bool {
        self.flags & Self::TSC_OFFSETTING != 0
    }
}

/// The groups an exit of each basic reason carries on top of the VCpu's default (the mask
/// given to `VCpuConfigure`). Unknown bits are ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct TransferTable {
    /// Entry `n`: the groups for basic exit reason `n`.
    pub by_reason: [TransferMask; TABLE_REASONS],
}

impl TransferTable {
    /// The groups for an exit with full reason `reason`, given the default `base`.
    pub fn for_reason(&self, reason: u32, base: TransferMask) -> TransferMask {
        let extra = self.by_reason.get(usize::from(reason as u16)).copied();
        let extra = extra.map_or(0, TransferMask::bits) & TransferMask::ALL.bits();
        TransferMask::from_bits(extra).map_or(base, |e| base | e)
    }
}

fn view<T: Pod>(page: &[u8], offset: usize) -> Option<&T> {
    let bytes = page.get(offset..offset.checked_add(size_of::<T>())?)?;
    bytemuck::try_from_bytes(bytes).ok()
}

fn view_mut<T: Pod>(page: &mut [u8], offset: usize) -> Option<&mut T> {
    let bytes = page.get_mut(offset..offset.checked_add(size_of::<T>())?)?;
    bytemuck::try_from_bytes_mut(bytes).ok()
}

/// The exit area of `page` (`None` if the slice is too short or misaligned).
pub fn exit(page: &[u8]) -> Option<&ExitMessage> {
    view(page, EXIT_OFFSET)
}

/// The exit area, to write.
pub fn exit_mut(page: &mut [u8]) -> Option<&mut ExitMessage> {
    view_mut(page, EXIT_OFFSET)
}

/// The reply area.
pub fn reply(page: &[u8]) -> Option<&ExitReply> {
    view(page, REPLY_OFFSET)
}

/// The reply area, to write.
pub fn reply_mut(page: &mut [u8]) -> Option<&mut ExitReply> {
    view_mut(page, REPLY_OFFSET)
}

/// The exit area to read and the reply area to write, at once (a VMM answering).
pub fn exit_and_reply(page: &mut [u8]) -> Option<(&ExitMessage, &mut ExitReply)> {
    let (exit_part, reply_part) = page.split_at_mut_checked(REPLY_OFFSET)?;
    Some((view(exit_part, EXIT_OFFSET)?, view_mut(reply_part, 0)?))
}

/// The transfer table.
pub fn transfer_table(page: &[u8]) -> Option<&TransferTable> {
    view(page, TRANSFER_TABLE_OFFSET)
}

/// The transfer table, to write.
pub fn transfer_table_mut(page: &mut [u8]) -> Option<&mut TransferTable> {
    view_mut(page, TRANSFER_TABLE_OFFSET)
}

/// The clock.
pub fn clock(page: &[u8]) -> Option<&Clock> {
    view(page, CLOCK_OFFSET)
}

/// The clock, to write (the kernel).
pub fn clock_mut(page: &mut [u8]) -> Option<&mut Clock> {
    view_mut(page, CLOCK_OFFSET)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed test is a panic")]
mod tests {
    use super::{clock_mut, exit, exit_mut, reply_mut, transfer_table_mut, Clock, PAGE_SIZE};
    use crate::vmexit::{ExitMessage, ExitReply, TransferMask};
    use core::mem::offset_of;

    /// A page-aligned page, as the frames are.
    #[repr(C, align(4096))]
    struct Page([u8; PAGE_SIZE]);

    /// The offsets docs/abi.md gives: a VMM in another language relies on them.
    #[test]
    fn layout_is_the_documented_one() {
        assert_eq!(offset_of!(ExitMessage, reason), 0);
        assert_eq!(offset_of!(ExitMessage, qualification), 8);
        assert_eq!(offset_of!(ExitMessage, rip), 40);
        assert_eq!(offset_of!(ExitMessage, rflags), 48);
        assert_eq!(offset_of!(ExitMessage, cr0), 56);
        assert_eq!(offset_of!(ExitMessage, idt_vectoring_info), 80);
        assert_eq!(offset_of!(ExitMessage, transfer), 96);
        assert_eq!(offset_of!(ExitMessage, cpl), 104);
        assert_eq!(offset_of!(ExitMessage, activity_state), 108);
        assert_eq!(offset_of!(ExitMessage, gprs), 112);
        assert_eq!(offset_of!(ExitMessage, gdtr), 432);
        assert_eq!(offset_of!(ExitMessage, efer), 464);
        assert_eq!(offset_of!(ExitMessage, pending_debug), 496);
        assert_eq!(offset_of!(ExitMessage, sysenter_cs), 524);
        assert_eq!(offset_of!(ExitMessage, segments), 240);
        assert_eq!(offset_of!(ExitMessage, controls), 504);
        assert_eq!(offset_of!(ExitMessage, pdptes), 544);
        assert_eq!(offset_of!(ExitMessage, exit_tsc), 576);
        assert_eq!(offset_of!(ExitMessage, entry_tsc), 584);
        assert_eq!(size_of::<ExitMessage>(), 592);
        assert_eq!(offset_of!(ExitReply, injection), 8);
        assert_eq!(offset_of!(ExitReply, gpr_mask), 20);
        assert_eq!(offset_of!(ExitReply, fault_address), 24);
        assert_eq!(offset_of!(ExitReply, gprs), 32);
        assert_eq!(offset_of!(ExitReply, writes), 160);
        assert_eq!(size_of::<ExitReply>(), 416);
        assert_eq!(super::CLOCK_OFFSET, 3712);
        assert_eq!(offset_of!(Clock, tsc_hz), 0);
        assert_eq!(offset_of!(Clock, preemption_timer_shift), 8);
        assert_eq!(offset_of!(Clock, flags), 9);
        assert_eq!(size_of::<Clock>(), 16);
    }

    #[test]
    fn the_clock_follows_the_transfer_table() {
        let mut page = Page([0; PAGE_SIZE]);
        let c = clock_mut(&mut page.0).unwrap();
        *c = Clock {
            tsc_hz: 2_000_000_000,
            preemption_timer_shift: 5,
            flags: Clock::PREEMPTION_TIMER,
            ..Clock::default()
        };
        assert!(c.known() && c.has_preemption_timer() && !c.has_tsc_offsetting());
        assert_eq!(page.0[3712..3720], 2_000_000_000u64.to_le_bytes());
        assert_eq!(page.0[3720..3722], [5, 1]);
        assert!(!Clock::default().known());
    }

    #[test]
    fn areas_are_views_of_the_page() {
        let mut page = Page([0; PAGE_SIZE]);
        exit_mut(&mut page.0).unwrap().rip = 0x1234;
        assert_eq!(page.0[40..48], 0x1234u64.to_le_bytes());
        reply_mut(&mut page.0).unwrap().count = 3;
        assert_eq!(page.0[2048 + 4], 3);
        let table = transfer_table_mut(&mut page.0).unwrap();
        table.by_reason[10] = TransferMask::SEGMENTS;
        table.by_reason[11] = TransferMask::from_bits(1).unwrap();
        let t = *table;
        assert_eq!(page.0[3072 + 88], 1);
        let base = TransferMask::CONTROLS;
        assert_eq!(t.for_reason(10, base), base | TransferMask::SEGMENTS);
        assert_eq!(t.for_reason(0x8000_000a, base), base | TransferMask::SEGMENTS);
        assert_eq!(t.for_reason(79, base), base);
        assert_eq!(t.for_reason(200, base), base, "past the table: the default only");
        // A short or misaligned slice is no page.
        assert!(exit(&page.0[..100]).is_none());
        assert!(exit(&page.0[1..]).is_none());
    }

    #[test]
    fn unknown_table_bits_are_ignored() {
        let mut page = Page([0; PAGE_SIZE]);
        let raw = 3072 + 8 * 12;
        page.0[raw..raw + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let table = super::transfer_table(&page.0).unwrap();
        assert_eq!(table.for_reason(12, TransferMask::NONE), TransferMask::ALL);
    }
}
