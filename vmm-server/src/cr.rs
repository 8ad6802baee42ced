//! Control-register emulation: MOV to/from CR0, CR3, CR4 and CR8, CLTS and LMSW.
//!
//! The VMM owns the CR0/CR4 guest/host masks and read shadows. The masks hold the bits the
//! guest may not see as they really are (CR0.NE and CR4.VMXE, forced on in the real
//! registers) and, for CR4, every bit the guest's CPUID does not offer, so an attempt to
//! set one exits and gets #GP. Bits outside the masks are the guest's and change without
//! an exit. When a write does exit, the VMM performs the whole MOV: the architectural
//! #GP checks, long-mode activation (EFER.LMA and the "IA-32e mode guest" entry control
//! follow CR0.PG when EFER.LME is set, since an emulated MOV does not go through the CPU),
//! and, in PAE mode, reloading the four PDPTE fields that VM entry loads from the VMCS.
//! CR8 is the local APIC's TPR: the dispatcher loads [`CrState::tpr`] from the APIC
//! before and hands a MOV to CR8 back to it after.

use protocols::vmcs::{ctl, Field};
use protocols::vmexit::{ExitMessage, TransferMask};

use crate::cpuid::CpuidTable;
use crate::exit_qualification::CrAccess;
use crate::guest_memory::{GuestMemory, MemoryError};
use crate::paging::PagingMode;
use crate::reply::ReplyBuilder;
use protocols::x86::{CR0_CD, CR0_ET, CR0_NW, CR0_PE, CR0_PG, CR0_TS, CR4_PAE, EFER_LMA, EFER_LME};

/// CR0 bits that exist (writes to the others are ignored, as on hardware).
const CR0_DEFINED: u64 = 0xe005_003f;
/// PDPTE bits that must be zero below MAXPHYADDR (2:1 and 8:5).
const PDPTE_RESERVED_LOW: u64 = 0x1e6;

/// The long-mode state a CR0 write may change, as the VMM knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongModeState {
    /// Guest IA32_EFER.
    pub efer: u64,
    /// VM-entry controls, if known.
    pub entry_controls: Option<u32>,
}

/// What a control-register exit resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrOutcome {
    /// Emulated; the writes are in the reply and RIP should advance.
    Done,
    /// Inject #GP(0).
    Gp,
    /// Inject #UD.
    Ud,
    /// The exit message lacks state the emulation needs.
    NeedsTransfer(TransferMask),
    /// A PDPTE load touched memory the VMM cannot see.
    Memory(MemoryError),
}

/// The VMM's side of CR0/CR4 virtualization.
#[derive(Clone, Debug)]
pub struct CrState {
    /// CR0 guest/host mask.
    pub cr0_mask: u64,
    /// CR0 read shadow (the guest's view of the masked bits).
    pub cr0_shadow: u64,
    /// CR0 bits the real register always has (NE, and PE/PG without unrestricted guest).
    pub cr0_forced_on: u64,
    /// CR4 guest/host mask.
    pub cr4_mask: u64,
    /// CR4 read shadow.
    pub cr4_shadow: u64,
    /// CR4 bits the real register always has (VMXE).
    pub cr4_forced_on: u64,
    /// CR4 bits the guest may set.
    pub cr4_allowed: u64,
    /// MAXPHYADDR the guest sees.
    pub phys_bits: u32,
    /// CR8 (the APIC's TPR bits 7:4), as the dispatcher last loaded or the guest wrote it.
    pub tpr: u8,
}

/// The emulation environment for one exit.
pub struct CrEnv<'a, M> {
    /// The exit.
    pub msg: &'a ExitMessage,
    /// 64-bit operand size (64-bit mode): MOV CR uses all of the GPR and CR8 exists.
    pub op64: bool,
    /// Long-mode state, updated in place.
    pub long_mode: &'a mut LongModeState,
    /// Guest memory, for PDPTEs.
    pub mem: &'a M,
}

impl CrState {
    /// The policy for a guest with this CPUID whose registers start as `cr0` and `cr4`
    /// (as the guest sees them). `cr0_forced_on` is NE, plus PE and PG when the CPU lacks
    /// unrestricted guest; `cr4_forced_on` is VMXE.
    pub fn new(
        cpuid: &CpuidTable,
        cr0: u64,
        cr4: u64,
        cr0_forced_on: u64,
        cr4_forced_on: u64,
    ) -> Self {
        let cr4_allowed = cpuid.cr4_allowed();
        let ext8 = cpuid.lookup(0x8000_0008, 0).eax & 0xff;
        Self {
            cr0_mask: cr0_forced_on,
            cr0_shadow: cr0,
            cr0_forced_on,
            cr4_mask: !cr4_allowed | cr4_forced_on,
            cr4_shadow: cr4,
            cr4_forced_on,
            cr4_allowed,
            phys_bits: if ext8 == 0 { 36 } else { ext8 },
            tpr: 0,
        }
    }

    /// The VMCS writes that program this policy (masks, shadows, and the real registers
    /// with the forced bits), for VCpu setup.
    pub fn setup_writes(&self, reply: &mut ReplyBuilder) {
        reply.write(Field::Cr0GuestHostMask, self.cr0_mask);
        reply.write(Field::Cr0ReadShadow, self.cr0_shadow);
        reply.write(Field::Cr4GuestHostMask, self.cr4_mask);
        reply.write(Field::Cr4ReadShadow, self.cr4_shadow);
        reply.write(Field::GuestCr0, self.cr0_shadow | CR0_ET | self.cr0_forced_on);
        reply.write(Field::GuestCr4, self.cr4_shadow | self.cr4_forced_on);
    }

    /// CR0 as the guest reads it, given the real register.
    pub fn guest_cr0(&self, real: u64) -> u64 {
        (real & !self.cr0_mask) | (self.cr0_shadow & self.cr0_mask)
    }

    /// CR4 as the guest reads it, given the real register.
    pub fn guest_cr4(&self, real: u64) -> u64 {
        (real & !self.cr4_mask) | (self.cr4_shadow & self.cr4_mask)
    }

    /// Emulate `access`; register loads and VMCS writes go into `reply`.
    pub fn emulate<M: GuestMemory>(
        &mut self,
        access: CrAccess,
        env: &mut CrEnv<'_, M>,
        reply: &mut ReplyBuilder,
    ) -> CrOutcome {
        let width = if env.op64 { u64::MAX } else { 0xffff_ffff };
        let gpr = |r: u8| env.msg.gprs.get(r).unwrap_or(0) & width;
        match access {
            CrAccess::MovToCr { cr: 0, gpr: r } => self.write_cr0(gpr(r), env, reply),
            CrAccess::MovToCr { cr: 3, gpr: r } => self.write_cr3(gpr(r), env, reply),
            CrAccess::MovToCr { cr: 4, gpr: r } => self.write_cr4(gpr(r), env, reply),
            CrAccess::MovToCr { cr: 8, gpr: r } if env.op64 => match u8::try_from(gpr(r)) {
                Ok(tpr) if tpr <= 15 => {
                    self.tpr = tpr;
                    CrOutcome::Done
                }
                _ => CrOutcome::Gp,
            },
            CrAccess::MovFromCr { cr, gpr: r } => {
                let value = match cr {
                    0 => self.guest_cr0(env.msg.cr0),
                    3 => env.msg.cr3,
                    4 => self.guest_cr4(env.msg.cr4),
                    8 if env.op64 => u64::from(self.tpr),
                    _ => return CrOutcome::Ud,
                };
                reply.set_gpr(r, value & width);
                CrOutcome::Done
            }
            CrAccess::Clts => {
                let cr0 = self.guest_cr0(env.msg.cr0) & !CR0_TS;
                self.write_cr0(cr0, env, reply)
            }
            CrAccess::Lmsw { source, .. } => {
                // LMSW loads PE, MP, EM and TS, and cannot clear PE.
                let old = self.guest_cr0(env.msg.cr0);
                let cr0 = (old & !0xf) | (u64::from(source) & 0xf) | (old & CR0_PE);
                self.write_cr0(cr0, env, reply)
            }
            CrAccess::MovToCr { .. } => CrOutcome::Ud,
        }
    }

    fn write_cr0<M: GuestMemory>(
        &mut self,
        value: u64,
        env: &mut CrEnv<'_, M>,
        reply: &mut ReplyBuilder,
    ) -> CrOutcome {
        if value >> 32 != 0 {
            return CrOutcome::Gp;
        }
        let value = (value & CR0_DEFINED) | CR0_ET;
        if (value & CR0_PG != 0 && value & CR0_PE == 0)
            || (value & CR0_NW != 0 && value & CR0_CD == 0)
        {
            return CrOutcome::Gp;
        }
        let old = self.guest_cr0(env.msg.cr0);
        let cr4 = self.guest_cr4(env.msg.cr4);
        let lm = *env.long_mode;
        let mut efer = lm.efer;
        let paging_on = old & CR0_PG == 0 && value & CR0_PG != 0;
        let paging_off = old & CR0_PG != 0 && value & CR0_PG == 0;
        if efer & EFER_LME != 0 && (paging_on || (paging_off && efer & EFER_LMA != 0)) {
            // Leaving long mode from 64-bit code faults; entering it needs PAE.
            if (paging_on && cr4 & CR4_PAE == 0) || (paging_off && env.op64) {
                return CrOutcome::Gp;
            }
            let Some(entry) = lm.entry_controls else {
                return CrOutcome::NeedsTransfer(TransferMask::CONTROLS);
            };
            let (efer_new, entry_new) = if paging_on {
                (efer | EFER_LMA, entry | ctl::entry::IA32E_MODE_GUEST)
            } else {
                (efer & !EFER_LMA, entry & !ctl::entry::IA32E_MODE_GUEST)
            };
            efer = efer_new;
            reply.write(Field::GuestIa32Efer, efer);
            reply.write(Field::EntryControls, u64::from(entry_new));
            *env.long_mode = LongModeState { efer, entry_controls: Some(entry_new) };
        }
        if let Some(outcome) = self.load_pdptes(value, cr4, efer, env.msg.cr3, env.mem, reply) {
            return outcome;
        }
        self.cr0_shadow = value;
        reply.write(Field::GuestCr0, value | self.cr0_forced_on);
        reply.write(Field::Cr0ReadShadow, value);
        CrOutcome::Done
    }

    fn write_cr3<M: GuestMemory>(
        &mut self,
        value: u64,
        env: &mut CrEnv<'_, M>,
        reply: &mut ReplyBuilder,
    ) -> CrOutcome {
        if value.checked_shr(self.phys_bits).unwrap_or(0) != 0 {
            return CrOutcome::Gp;
        }
        let cr0 = self.guest_cr0(env.msg.cr0);
        let cr4 = self.guest_cr4(env.msg.cr4);
        if let Some(outcome) = self.load_pdptes(cr0, cr4, env.long_mode.efer, value, env.mem, reply)
        {
            return outcome;
        }
        reply.write(Field::GuestCr3, value);
        CrOutcome::Done
    }

    fn write_cr4<M: GuestMemory>(
        &mut self,
        value: u64,
        env: &mut CrEnv<'_, M>,
        reply: &mut ReplyBuilder,
    ) -> CrOutcome {
        if value & !self.cr4_allowed != 0 {
            return CrOutcome::Gp;
        }
        let efer = env.long_mode.efer;
        if efer & EFER_LMA != 0 && value & CR4_PAE == 0 {
            return CrOutcome::Gp;
        }
        let cr0 = self.guest_cr0(env.msg.cr0);
        if let Some(outcome) = self.load_pdptes(cr0, value, efer, env.msg.cr3, env.mem, reply) {
            return outcome;
        }
        self.cr4_shadow = value;
        reply.write(Field::GuestCr4, value | self.cr4_forced_on);
        reply.write(Field::Cr4ReadShadow, value);
        CrOutcome::Done
    }

    /// In PAE mode (after the write), load the four PDPTEs the CPU would load and queue
    /// them as VMCS writes; `Some` when that fails. Outside PAE mode, nothing.
    fn load_pdptes<M: GuestMemory>(
        &self,
        cr0: u64,
        cr4: u64,
        efer: u64,
        cr3: u64,
        mem: &M,
        reply: &mut ReplyBuilder,
    ) -> Option<CrOutcome> {
        if PagingMode::from_regs(cr0, cr4, efer) != PagingMode::Pae {
            return None;
        }
        let base = cr3 & 0xffff_ffe0;
        let reserved_high = u64::MAX.checked_shl(self.phys_bits).unwrap_or(0);
        let fields =
            [Field::GuestPdpte0, Field::GuestPdpte1, Field::GuestPdpte2, Field::GuestPdpte3];
        let mut values = [0u64; 4];
        for (i, v) in values.iter_mut().enumerate() {
            let pdpte = match mem.read_u64(base.wrapping_add(8u64.wrapping_mul(i as u64))) {
                Ok(p) => p,
                Err(e) => return Some(CrOutcome::Memory(e)),
            };
            if pdpte & 1 != 0 && pdpte & (PDPTE_RESERVED_LOW | reserved_high) != 0 {
                return Some(CrOutcome::Gp);
            }
            *v = pdpte;
        }
        for (field, value) in fields.into_iter().zip(values) {
            reply.write(field, value);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{CrEnv, CrOutcome, CrState, LongModeState};
    use crate::cpuid::{CpuidConfig, CpuidRegs, CpuidTable};
    use crate::exit_qualification::CrAccess;
    use crate::guest_memory::{GuestMemory, SliceMemory};
    use crate::reply::ReplyBuilder;
    use protocols::vmcs::{ctl, Field};
    use protocols::vmexit::ExitReply;
    use protocols::vmexit::{ExitMessage, TransferMask};
    use protocols::x86::{CR0_ET, CR0_NE, CR0_PG, CR4_VMXE, EFER_LMA, EFER_LME};

    fn cpuid() -> CpuidTable {
        CpuidTable::from_host(&CpuidConfig::default(), |leaf, _| match leaf {
            0 => CpuidRegs { eax: 7, ..CpuidRegs::default() },
            // DE PSE PAE PGE FXSR SSE.
            1 => CpuidRegs {
                edx: 1 << 2 | 1 << 3 | 1 << 6 | 1 << 13 | 1 << 24 | 1 << 25,
                ..CpuidRegs::default()
            },
            0x8000_0000 => CpuidRegs { eax: 0x8000_0008, ..CpuidRegs::default() },
            0x8000_0001 => CpuidRegs { edx: 1 << 29 | 1 << 20, ..CpuidRegs::default() },
            0x8000_0008 => CpuidRegs { eax: 0x3027, ..CpuidRegs::default() },
            _ => CpuidRegs::default(),
        })
    }

    fn state() -> CrState {
        CrState::new(&cpuid(), 0x10, 0, CR0_NE, CR4_VMXE)
    }

    fn written(r: &ExitReply, f: Field) -> Option<u64> {
        r.writes().iter().find(|w| w.field == f as u32).map(|w| w.value)
    }

    /// Run one access with RAX = `rax` on a guest whose real CR0/CR4 are `cr0`/`cr4`.
    fn run(
        s: &mut CrState,
        access: CrAccess,
        rax: u64,
        (cr0, cr4): (u64, u64),
        lm: &mut LongModeState,
        mem: &SliceMemory<'_>,
    ) -> (CrOutcome, ExitReply) {
        let mut msg = ExitMessage { cr0, cr4, cr3: 0x1000, ..Default::default() };
        msg.gprs.regs[0] = rax;
        let mut env = CrEnv { msg: &msg, op64: lm.efer & EFER_LMA != 0, long_mode: lm, mem };
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        let out = s.emulate(access, &mut env, &mut r);
        (out, r.finish())
    }

    #[test]
    fn setup_programs_masks_and_shadows() {
        let s = state();
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        s.setup_writes(&mut r);
        assert_eq!(written(r.reply(), Field::Cr0GuestHostMask), Some(CR0_NE));
        assert_eq!(written(r.reply(), Field::GuestCr0), Some(0x30));
        assert_eq!(written(r.reply(), Field::Cr0ReadShadow), Some(0x10));
        let cr4_mask = written(r.reply(), Field::Cr4GuestHostMask).unwrap();
        assert_ne!(cr4_mask & CR4_VMXE, 0);
        assert_ne!(cr4_mask & (1 << 17), 0, "PCIDE traps");
        assert_eq!(cr4_mask & (1 << 5), 0, "PAE is the guest's");
        assert_eq!(written(r.reply(), Field::GuestCr4), Some(CR4_VMXE));
        // The guest reads its own view through the shadow.
        assert_eq!(s.guest_cr0(0x30), 0x10);
        assert_eq!(s.guest_cr4(CR4_VMXE | 0x20), 0x20);
    }

    #[test]
    fn mov_to_cr0_keeps_ne_forced_and_shadows_the_guest_value() {
        let mut ram = [0u8; 0];
        let mem = SliceMemory::new(0, &mut ram);
        let mut s = state();
        let mut lm = LongModeState { efer: 0, entry_controls: None };
        // Protected mode on, ET dropped by the guest: ET reads 1, NE stays forced.
        let (out, r) =
            run(&mut s, CrAccess::MovToCr { cr: 0, gpr: 0 }, 0x1, (0x30, 0), &mut lm, &mem);
        assert_eq!(out, CrOutcome::Done);
        assert_eq!(written(&r, Field::GuestCr0), Some(0x31));
        assert_eq!(written(&r, Field::Cr0ReadShadow), Some(0x11));
        assert_eq!(s.guest_cr0(0x31), 0x11);
    }

    #[test]
    fn cr0_gp_checks() {
        let mut ram = [0u8; 0];
        let mem = SliceMemory::new(0, &mut ram);
        let mut s = state();
        let mut lm = LongModeState { efer: 0, entry_controls: None };
        let mov = CrAccess::MovToCr { cr: 0, gpr: 0 };
        for bad in [CR0_PG, 1 << 29 | 1] {
            let (out, r) = run(&mut s, mov, bad, (0x30, 0), &mut lm, &mem);
            assert_eq!(out, CrOutcome::Gp, "{bad:#x}");
            assert!(r.writes().is_empty());
        }
        // 32-bit code only moves EAX: the high half of RAX is ignored.
        let (out, _) = run(&mut s, mov, 0xffff_0000_0000_0011, (0x30, 0), &mut lm, &mem);
        assert_eq!(out, CrOutcome::Done);
        // 64-bit code moves all of RAX, and bits 63:32 are reserved.
        let mut long = LongModeState { efer: EFER_LME | EFER_LMA, entry_controls: Some(0) };
        let (out, _) =
            run(&mut s, mov, 1 << 32 | 0x8000_0011, (0x8000_0031, 0x20), &mut long, &mem);
        assert_eq!(out, CrOutcome::Gp);
    }

    #[test]
    fn paging_with_lme_enters_and_leaves_long_mode() {
        let mut ram = [0u8; 0];
        let mem = SliceMemory::new(0, &mut ram);
        let mut s = state();
        let mov = CrAccess::MovToCr { cr: 0, gpr: 0 };
        // Linux's decompressor: CR0 = PE|MP|ET|NE|WP|AM|PG in one MOV, LME set, PAE on.
        let cr0_state = 0x8005_0033;
        let mut lm = LongModeState { efer: EFER_LME, entry_controls: None };
        let (out, _) = run(&mut s, mov, cr0_state, (0x31, 0x20), &mut lm, &mem);
        assert_eq!(out, CrOutcome::NeedsTransfer(TransferMask::CONTROLS));
        lm.entry_controls = Some(0x11ff);
        let (out, _) = run(&mut s, mov, cr0_state, (0x31, 0), &mut lm, &mem);
        assert_eq!(out, CrOutcome::Gp, "long mode needs PAE");
        let (out, r) = run(&mut s, mov, cr0_state, (0x31, 0x20), &mut lm, &mem);
        assert_eq!(out, CrOutcome::Done);
        assert_eq!(written(&r, Field::GuestIa32Efer), Some(EFER_LME | EFER_LMA));
        let entry = written(&r, Field::EntryControls).unwrap() as u32;
        assert_eq!(entry, 0x11ff | ctl::entry::IA32E_MODE_GUEST);
        assert_eq!(lm.efer, EFER_LME | EFER_LMA);
        assert_eq!(written(&r, Field::GuestCr0), Some(cr0_state));
        // Paging off again from compatibility-mode code (32-bit operands).
        let mut lm32 = LongModeState { efer: EFER_LME | EFER_LMA, entry_controls: Some(entry) };
        let mut msg = ExitMessage { cr0: cr0_state, cr4: 0x20, ..Default::default() };
        msg.gprs.regs[0] = 0x11;
        let mut env = CrEnv { msg: &msg, op64: false, long_mode: &mut lm32, mem: &mem };
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        assert_eq!(s.emulate(mov, &mut env, &mut r), CrOutcome::Done);
        assert_eq!(written(r.reply(), Field::GuestIa32Efer), Some(EFER_LME));
        assert_eq!(written(r.reply(), Field::EntryControls), Some(0x11ff));
        // ... but not from 64-bit code.
        let mut lm64 = LongModeState { efer: EFER_LME | EFER_LMA, entry_controls: Some(entry) };
        let (out, _) = run(&mut s, mov, 0x11, (cr0_state, 0x20), &mut lm64, &mem);
        assert_eq!(out, CrOutcome::Gp);
    }

    #[test]
    fn pae_paging_loads_pdptes() {
        let mut ram = vec![0u8; 0x2000];
        let mut mem = SliceMemory::new(0, &mut ram);
        for (i, v) in [0x2001u64, 0x3001, 0, 0x5001].into_iter().enumerate() {
            mem.write(0x1000 + 8 * i as u64, &v.to_le_bytes()).unwrap();
        }
        let mut s = state();
        let mut lm = LongModeState { efer: 0, entry_controls: None };
        let (out, r) = run(
            &mut s,
            CrAccess::MovToCr { cr: 0, gpr: 0 },
            0x8000_0011,
            (0x31, 0x20),
            &mut lm,
            &mem,
        );
        assert_eq!(out, CrOutcome::Done);
        assert_eq!(written(&r, Field::GuestPdpte0), Some(0x2001));
        assert_eq!(written(&r, Field::GuestPdpte3), Some(0x5001));
        // A present PDPTE with reserved bits faults and changes nothing.
        mem.write(0x1010, &(0x4001u64 | 1 << 5).to_le_bytes()).unwrap();
        let (out, r) = run(
            &mut s,
            CrAccess::MovToCr { cr: 0, gpr: 0 },
            0x8000_0011,
            (0x31, 0x20),
            &mut lm,
            &mem,
        );
        assert_eq!(out, CrOutcome::Gp);
        assert!(r.writes().is_empty());
        // PDPTEs outside RAM.
        let mut tiny = [0u8; 8];
        let tiny = SliceMemory::new(0, &mut tiny);
        let (out, _) = run(
            &mut s,
            CrAccess::MovToCr { cr: 4, gpr: 0 },
            0x20,
            (0x8000_0031, 0),
            &mut lm,
            &tiny,
        );
        assert!(matches!(out, CrOutcome::Memory(_)));
    }

    #[test]
    fn cr4_rules() {
        let mut ram = [0u8; 0];
        let mem = SliceMemory::new(0, &mut ram);
        let mut s = state();
        let mut lm = LongModeState { efer: 0, entry_controls: None };
        let mov = CrAccess::MovToCr { cr: 4, gpr: 0 };
        for bad in [CR4_VMXE, 1 << 17, 1 << 18, 1 << 12] {
            assert_eq!(
                run(&mut s, mov, bad, (0x31, 0), &mut lm, &mem).0,
                CrOutcome::Gp,
                "{bad:#x}"
            );
        }
        let (out, r) = run(&mut s, mov, 0x6b8, (0x31, 0), &mut lm, &mem);
        assert_eq!(out, CrOutcome::Done);
        assert_eq!(written(&r, Field::GuestCr4), Some(0x6b8 | CR4_VMXE));
        assert_eq!(written(&r, Field::Cr4ReadShadow), Some(0x6b8));
        // PAE cannot be cleared in long mode.
        let mut long = LongModeState { efer: EFER_LME | EFER_LMA, entry_controls: None };
        assert_eq!(run(&mut s, mov, 0x80, (0x8000_0031, 0x20), &mut long, &mem).0, CrOutcome::Gp);
        assert_eq!(
            run(&mut s, mov, 1 << 40 | 0x20, (0x8000_0031, 0x20), &mut long, &mem).0,
            CrOutcome::Gp
        );
    }

    #[test]
    fn cr3_cr8_clts_lmsw() {
        let mut ram = [0u8; 0];
        let mem = SliceMemory::new(0, &mut ram);
        let mut s = state();
        let mut long = LongModeState { efer: EFER_LME | EFER_LMA, entry_controls: None };
        let real = (0x8000_0031 | CR0_ET, 0x20);
        let (out, r) =
            run(&mut s, CrAccess::MovToCr { cr: 3, gpr: 0 }, 0x12_3000, real, &mut long, &mem);
        assert_eq!(out, CrOutcome::Done);
        assert_eq!(written(&r, Field::GuestCr3), Some(0x12_3000));
        assert_eq!(
            run(&mut s, CrAccess::MovToCr { cr: 3, gpr: 0 }, 1 << 63, real, &mut long, &mem).0,
            CrOutcome::Gp
        );
        let (out, r) = run(&mut s, CrAccess::MovFromCr { cr: 3, gpr: 2 }, 0, real, &mut long, &mem);
        assert_eq!(out, CrOutcome::Done);
        assert_eq!(r.gprs.regs[2], 0x1000);
        assert_eq!(
            run(&mut s, CrAccess::MovToCr { cr: 8, gpr: 0 }, 9, real, &mut long, &mem).0,
            CrOutcome::Done
        );
        assert_eq!(s.tpr, 9);
        assert_eq!(
            run(&mut s, CrAccess::MovToCr { cr: 8, gpr: 0 }, 16, real, &mut long, &mem).0,
            CrOutcome::Gp
        );
        let (_, r) = run(&mut s, CrAccess::MovFromCr { cr: 8, gpr: 5 }, 0, real, &mut long, &mem);
        assert_eq!(r.gprs.regs[5], 9);
        // CR8 does not exist outside 64-bit mode; CR1 never does.
        let mut flat = LongModeState { efer: 0, entry_controls: None };
        assert_eq!(
            run(&mut s, CrAccess::MovToCr { cr: 8, gpr: 0 }, 0, (0x31, 0), &mut flat, &mem).0,
            CrOutcome::Ud
        );
        assert_eq!(
            run(&mut s, CrAccess::MovToCr { cr: 1, gpr: 0 }, 0, (0x31, 0), &mut flat, &mem).0,
            CrOutcome::Ud
        );
        // CLTS clears TS; LMSW sets MP/EM/TS but cannot clear PE.
        let (out, r) = run(&mut s, CrAccess::Clts, 0, (0x39, 0), &mut flat, &mem);
        assert_eq!(out, CrOutcome::Done);
        assert_eq!(written(&r, Field::Cr0ReadShadow), Some(0x11));
        let (_, r) = run(
            &mut s,
            CrAccess::Lmsw { source: 0x000e, memory_operand: false },
            0,
            (0x31, 0),
            &mut flat,
            &mem,
        );
        assert_eq!(written(&r, Field::Cr0ReadShadow), Some(0x1f));
    }
}
