//! Decoders for the exit qualification and the related information fields (Intel SDM
//! Vol. 3C, 28.2.1 and 28.2.2; numbered 27.2.x in older editions).
//!
//! Each decoder turns the raw word into a small typed value, and every encoding the SDM
//! leaves undefined is a [`DecodeError`] rather than a guess: the words come from the
//! kernel, but a VMM that acted on a garbled qualification would emulate the wrong
//! instruction. Bits the SDM reserves as zero are checked too, except in the EPT-violation
//! qualification, where newer processors keep adding bits.

use protocols::vmexit::{EventInjection, EventType};

/// Why a qualification could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The I/O size field (bits 2:0) holds 2 or a value above 3.
    IoSize(u8),
    /// Bits the SDM reserves (as zero) are set.
    ReservedBits(u64),
    /// The address-size field of the instruction information is 3 or more.
    AddressSize(u8),
    /// The segment-register field of the instruction information is 6 or 7.
    Segment(u8),
    /// The interruption type is one the SDM leaves unused in this field.
    EventType(u8),
    /// The field's valid bit is clear.
    NotValid,
}

/// Direction of an I/O instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    /// OUT, OUTS: guest to device.
    Out,
    /// IN, INS: device to guest.
    In,
}

/// The exit qualification of an I/O-instruction exit ("Exit Qualification for I/O
/// Instructions"): bits 2:0 size - 1, 3 direction, 4 string, 5 REP, 6 immediate operand,
/// 31:16 port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoQualification {
    /// Access width in bytes: 1, 2 or 4.
    pub size: u8,
    /// IN or OUT.
    pub direction: IoDirection,
    /// INS/OUTS.
    pub string: bool,
    /// REP prefix (string instructions only).
    pub rep: bool,
    /// The port came from an immediate operand rather than DX.
    pub immediate: bool,
    /// The port number.
    pub port: u16,
}

impl IoQualification {
    /// Bits 15:7 and 63:32 are reserved.
    const RESERVED: u64 = 0xffff_ffff_0000_ff80;

    /// Decode a raw I/O exit qualification.
    pub fn decode(raw: u64) -> Result<Self, DecodeError> {
        if raw & Self::RESERVED != 0 {
            return Err(DecodeError::ReservedBits(raw & Self::RESERVED));
        }
        let size = match raw & 7 {
            0 => 1,
            1 => 2,
            3 => 4,
            other => return Err(DecodeError::IoSize(other as u8)),
        };
        Ok(Self {
            size,
            direction: if raw & (1 << 3) != 0 { IoDirection::In } else { IoDirection::Out },
            string: raw & (1 << 4) != 0,
            rep: raw & (1 << 5) != 0,
            immediate: raw & (1 << 6) != 0,
            port: (raw >> 16) as u16,
        })
    }
}

/// A control-register access ("Exit Qualification for Control-Register Accesses"):
/// bits 3:0 CR number, 5:4 access type, 6 LMSW operand type, 11:8 GPR, 31:16 LMSW data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccess {
    /// MOV to CR`cr` from GPR `gpr` (x86 register encoding, 0 = RAX).
    MovToCr {
        /// Control register number (0, 3, 4 or 8).
        cr: u8,
        /// Source register.
        gpr: u8,
    },
    /// MOV from CR`cr` to GPR `gpr`.
    MovFromCr {
        /// Control register number (3 or 8).
        cr: u8,
        /// Destination register.
        gpr: u8,
    },
    /// CLTS.
    Clts,
    /// LMSW with `source` as the new machine status word.
    Lmsw {
        /// The 16-bit operand (only bits 3:0 matter to LMSW).
        source: u16,
        /// The operand came from memory (the guest-linear address field is valid).
        memory_operand: bool,
    },
}

impl CrAccess {
    /// Bits 7, 15:12 and 63:32 are reserved.
    const RESERVED: u64 = 0xffff_ffff_0000_f080;

    /// Decode a raw control-register-access exit qualification.
    pub fn decode(raw: u64) -> Result<Self, DecodeError> {
        if raw & Self::RESERVED != 0 {
            return Err(DecodeError::ReservedBits(raw & Self::RESERVED));
        }
        let cr = (raw & 0xf) as u8;
        let gpr = ((raw >> 8) & 0xf) as u8;
        Ok(match (raw >> 4) & 3 {
            0 => Self::MovToCr { cr, gpr },
            1 => Self::MovFromCr { cr, gpr },
            2 => Self::Clts,
            _ => Self::Lmsw { source: (raw >> 16) as u16, memory_operand: raw & (1 << 6) != 0 },
        })
    }
}

/// A MOV DR exit ("Exit Qualification for MOV DR"): bits 2:0 DR, 4 direction, 11:8 GPR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrAccess {
    /// Debug register number 0-7.
    pub dr: u8,
    /// MOV from DR (a read) rather than MOV to DR.
    pub read: bool,
    /// The general-purpose register operand.
    pub gpr: u8,
}

impl DrAccess {
    /// Bits 3, 7:5, 63:12 are reserved.
    const RESERVED: u64 = !0xf17;

    /// Decode a raw MOV-DR exit qualification.
    pub fn decode(raw: u64) -> Result<Self, DecodeError> {
        if raw & Self::RESERVED != 0 {
            return Err(DecodeError::ReservedBits(raw & Self::RESERVED));
        }
        Ok(Self { dr: (raw & 7) as u8, read: raw & (1 << 4) != 0, gpr: ((raw >> 8) & 0xf) as u8 })
    }
}

/// An EPT violation ("Exit Qualification for EPT Violations"). Bits this type does not
/// name are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EptViolation {
    /// Bit 0: the access was a data read.
    pub read: bool,
    /// Bit 1: the access was a data write.
    pub write: bool,
    /// Bit 2: the access was an instruction fetch.
    pub fetch: bool,
    /// Bit 3: the guest-physical address was readable.
    pub readable: bool,
    /// Bit 4: ... writable.
    pub writable: bool,
    /// Bit 5: ... executable (for supervisor-mode addresses under mode-based control).
    pub executable: bool,
    /// Bit 6: ... executable for user-mode addresses (mode-based execute control).
    pub user_executable: bool,
    /// Bit 7: the guest-linear-address field is valid.
    pub linear_valid: bool,
    /// Bit 8 (when bit 7 is set): the access was to the translated address, not to a
    /// paging-structure entry during the guest's page walk.
    pub translated: bool,
    /// Bit 12: NMI unblocking due to IRET.
    pub nmi_unblocking: bool,
    /// Bit 16: the access was asynchronous to instruction execution (e.g. a PT trace
    /// output), so RIP does not point at a faulting instruction.
    pub asynchronous: bool,
}

impl EptViolation {
    /// Bit 1 of the raw qualification: the access was a data write (for a caller that
    /// needs only that).
    pub const WRITE: u64 = 1 << 1;

    /// Decode a raw EPT-violation exit qualification.
    pub fn decode(raw: u64) -> Self {
        let bit = |n: u32| raw & (1u64 << n) != 0;
        Self {
            read: bit(0),
            write: raw & Self::WRITE != 0,
            fetch: bit(2),
            readable: bit(3),
            writable: bit(4),
            executable: bit(5),
            user_executable: bit(6),
            linear_valid: bit(7),
            translated: bit(7) && bit(8),
            nmi_unblocking: bit(12),
            asynchronous: bit(16),
        }
    }

    /// No access of any kind was allowed: the address is not backed by RAM, so a data
    /// access is MMIO for the VMM to emulate.
    pub fn unmapped(&self) -> bool {
        !(self.readable || self.writable || self.executable || self.user_executable)
    }
}

/// Address size of a string I/O instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSize {
    /// 16-bit: SI/DI/CX.
    Bits16,
    /// 32-bit: ESI/EDI/ECX.
    Bits32,
    /// 64-bit: RSI/RDI/RCX.
    Bits64,
}

impl AddressSize {
    /// The mask that selects the register bits used for addressing and counting.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Bits16 => 0xffff,
            Self::Bits32 => 0xffff_ffff,
            Self::Bits64 => u64::MAX,
        }
    }
}

/// A segment register, numbered as instruction information encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentReg {
    /// ES.
    Es = 0,
    /// CS.
    Cs = 1,
    /// SS.
    Ss = 2,
    /// DS.
    Ds = 3,
    /// FS.
    Fs = 4,
    /// GS.
    Gs = 5,
}

/// The VM-exit instruction-information field for INS and OUTS: bits 9:7 address size,
/// bits 17:15 segment register (OUTS only; INS always writes through ES).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringIoInfo {
    /// The address size, which also selects the width of RCX.
    pub address_size: AddressSize,
    /// The source segment of OUTS.
    pub segment: SegmentReg,
}

impl StringIoInfo {
    /// Decode the instruction-information field of an INS/OUTS exit. Bits the SDM leaves
    /// undefined for these instructions are ignored.
    pub fn decode(raw: u32) -> Result<Self, DecodeError> {
        let address_size = match (raw >> 7) & 7 {
            0 => AddressSize::Bits16,
            1 => AddressSize::Bits32,
            2 => AddressSize::Bits64,
            other => return Err(DecodeError::AddressSize(other as u8)),
        };
        let segment = match (raw >> 15) & 7 {
            0 => SegmentReg::Es,
            1 => SegmentReg::Cs,
            2 => SegmentReg::Ss,
            3 => SegmentReg::Ds,
            4 => SegmentReg::Fs,
            5 => SegmentReg::Gs,
            other => return Err(DecodeError::Segment(other as u8)),
        };
        Ok(Self { address_size, segment })
    }
}

/// An event the CPU reports (VM-exit interruption information, IDT-vectoring
/// information): the VM-entry format ([`EventInjection`]: vector, type, error code, valid)
/// plus NMI unblocking in bit 12, checked here once. Returns the event and its type, which
/// is never "other" (that type exists only for injection).
pub fn reported_event(raw: u32) -> Result<(EventInjection, EventType), DecodeError> {
    let event = EventInjection::from_raw(raw);
    if !event.is_valid() {
        return Err(DecodeError::NotValid);
    }
    let reserved = raw & EventInjection::RESERVED & !EventInjection::NMI_UNBLOCKING;
    if reserved != 0 {
        return Err(DecodeError::ReservedBits(u64::from(reserved)));
    }
    match event.event_type() {
        Some(EventType::Other) | None => Err(DecodeError::EventType(((raw >> 8) & 7) as u8)),
        Some(kind) => Ok((event, kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::{
        reported_event, AddressSize, CrAccess, DecodeError, DrAccess, EptViolation, IoDirection,
        IoQualification, SegmentReg, StringIoInfo,
    };
    use protocols::vmexit::{EventInjection, EventType};

    fn io(
        size: u8,
        direction: IoDirection,
        string: bool,
        rep: bool,
        imm: bool,
        port: u16,
    ) -> IoQualification {
        IoQualification { size, direction, string, rep, immediate: imm, port }
    }

    #[test]
    fn io_qualifications_from_the_sdm_table() {
        use IoDirection::{In, Out};
        // out dx, al with DX = 0x3f8: size 0, direction 0, DX operand.
        assert_eq!(
            IoQualification::decode(0x03f8_0000),
            Ok(io(1, Out, false, false, false, 0x3f8))
        );
        // in al, 0x60: direction (bit 3) and immediate (bit 6).
        assert_eq!(IoQualification::decode(0x0060_0048), Ok(io(1, In, false, false, true, 0x60)));
        // rep outsw to DX = 0x1f0: size 1, string (bit 4), REP (bit 5).
        assert_eq!(IoQualification::decode(0x01f0_0031), Ok(io(2, Out, true, true, false, 0x1f0)));
        // in eax, dx with DX = 0xcfc: size 3.
        assert_eq!(IoQualification::decode(0x0cfc_000b), Ok(io(4, In, false, false, false, 0xcfc)));
        // rep insd from port 0xffff.
        assert_eq!(IoQualification::decode(0xffff_003b), Ok(io(4, In, true, true, false, 0xffff)));
        assert_eq!(IoQualification::decode(0x2), Err(DecodeError::IoSize(2)));
        assert_eq!(IoQualification::decode(0x7), Err(DecodeError::IoSize(7)));
        assert_eq!(IoQualification::decode(0x80), Err(DecodeError::ReservedBits(0x80)));
        assert_eq!(IoQualification::decode(1 << 32), Err(DecodeError::ReservedBits(1 << 32)));
    }

    #[test]
    fn cr_access_qualifications_from_the_sdm_table() {
        // mov cr0, rax
        assert_eq!(CrAccess::decode(0x000), Ok(CrAccess::MovToCr { cr: 0, gpr: 0 }));
        // mov cr4, rbx: CR 4, GPR 3.
        assert_eq!(CrAccess::decode(0x304), Ok(CrAccess::MovToCr { cr: 4, gpr: 3 }));
        // mov rcx, cr3: access type 1 (bits 5:4), GPR 1.
        assert_eq!(CrAccess::decode(0x113), Ok(CrAccess::MovFromCr { cr: 3, gpr: 1 }));
        // mov cr8, r15: CR 8 (bit 3), GPR 15.
        assert_eq!(CrAccess::decode(0xf08), Ok(CrAccess::MovToCr { cr: 8, gpr: 15 }));
        // clts: access type 2.
        assert_eq!(CrAccess::decode(0x020), Ok(CrAccess::Clts));
        // lmsw ax with AX = 1: type 3, register operand, data in 31:16.
        assert_eq!(
            CrAccess::decode(0x0001_0030),
            Ok(CrAccess::Lmsw { source: 1, memory_operand: false })
        );
        // lmsw [mem] with 0xfff1: operand type bit 6.
        assert_eq!(
            CrAccess::decode(0xfff1_0070),
            Ok(CrAccess::Lmsw { source: 0xfff1, memory_operand: true })
        );
        assert_eq!(CrAccess::decode(0x80), Err(DecodeError::ReservedBits(0x80)));
        assert_eq!(CrAccess::decode(0x1000), Err(DecodeError::ReservedBits(0x1000)));
    }

    #[test]
    fn dr_access() {
        // mov rax, dr7 (read): DR 7, direction bit 4.
        assert_eq!(DrAccess::decode(0x17), Ok(DrAccess { dr: 7, read: true, gpr: 0 }));
        // mov dr0, r9.
        assert_eq!(DrAccess::decode(0x900), Ok(DrAccess { dr: 0, read: false, gpr: 9 }));
        assert!(DrAccess::decode(0x8).is_err());
    }

    #[test]
    fn ept_violation_bits() {
        // A write to a guest-physical address with no mapping, reached by translation.
        let v = EptViolation::decode(0x182);
        assert!(v.write && !v.read && !v.fetch && v.linear_valid && v.translated);
        assert!(v.unmapped());
        // A write to a read/execute page.
        let v = EptViolation::decode(0x1aa);
        assert!(v.write && v.readable && !v.writable && v.executable && !v.unmapped());
        // A page-walk access: bit 8 clear.
        assert!(!EptViolation::decode(0x081).translated);
        // Bit 8 means nothing without bit 7.
        assert!(!EptViolation::decode(0x100).translated);
        let v = EptViolation::decode(u64::MAX);
        assert!(v.nmi_unblocking && v.asynchronous);
    }

    #[test]
    fn string_io_instruction_information() {
        // 64-bit address size (bits 9:7 = 2), DS (bits 17:15 = 3).
        assert_eq!(
            StringIoInfo::decode(0x0001_8100),
            Ok(StringIoInfo { address_size: AddressSize::Bits64, segment: SegmentReg::Ds })
        );
        assert_eq!(
            StringIoInfo::decode(0x0000_0000),
            Ok(StringIoInfo { address_size: AddressSize::Bits16, segment: SegmentReg::Es })
        );
        assert_eq!(StringIoInfo::decode(3 << 7), Err(DecodeError::AddressSize(3)));
        assert_eq!(StringIoInfo::decode(6 << 15), Err(DecodeError::Segment(6)));
        assert_eq!(AddressSize::Bits32.mask(), 0xffff_ffff);
    }

    #[test]
    fn interruption_information() {
        let (pf, kind) = reported_event(0x8000_0b0e).unwrap();
        assert_eq!(
            (pf.vector(), kind, pf.delivers_error_code()),
            (14, EventType::HardwareException, true)
        );
        let (nmi, kind) = reported_event(0x8000_1202).unwrap();
        assert_eq!((kind, nmi.raw() & EventInjection::NMI_UNBLOCKING != 0), (EventType::Nmi, true));
        assert_eq!(reported_event(0x8000_0603).unwrap().1, EventType::SoftwareException);
        let (ext, kind) = reported_event(0x8000_0020).unwrap();
        assert_eq!((kind, ext.vector()), (EventType::ExternalInterrupt, 0x20));
        assert_eq!(reported_event(0x0000_0b0e), Err(DecodeError::NotValid));
        assert_eq!(reported_event(0x8000_0100), Err(DecodeError::EventType(1)));
        assert_eq!(reported_event(0x8000_0700), Err(DecodeError::EventType(7)));
        assert_eq!(reported_event(0x8000_2000), Err(DecodeError::ReservedBits(0x2000)));
    }
}
