//! The guest's CPUID: the host's values, filtered once at VM creation.
//!
//! [`CpuidTable::from_host`] snapshots the host leaves the policy passes on and rewrites
//! them, so a CPUID exit is a table lookup and the guest sees the same values on every
//! host CPU the VMM happens to run on. The policy is an allowlist per register: a feature
//! reaches the guest only if this file names it, so a new host CPU never leaks a feature
//! the VMM cannot virtualize. The choices:
//! - VMX (and SMX) are hidden: no nested virtualization. The hypervisor bit (leaf 1
//!   ECX bit 31) is set and leaf 0x4000_0000 carries [`HYPERVISOR_SIGNATURE`]; leaf
//!   0x4000_0001 (paravirtual features) is all zero: none are offered.
//! - XSAVE, OSXSAVE, AVX and everything VEX/EVEX-encoded (FMA, F16C, AVX2, AVX-512,
//!   VAES, ...) are hidden and leaf 0xD is zero, until the kernel switches XSAVE state and
//!   handles XSETBV per vCPU. x87/SSE-SSE4.2/AES/SHA stay.
//! - The local APIC is the VMM's model (`devices::lapic`), not the host's: APIC,
//!   x2APIC and TSC-deadline are offered whatever the host has, unless
//!   [`CpuidConfig::expose_apic`] is off (a guest then uses the 8259 PIC alone).
//! - MONITOR/MWAIT are hidden unless [`CpuidConfig::allow_mwait`], since MWAIT in a
//!   guest either exits or idles a host CPU the VMM does not own.
//! - PCID/INVPCID are hidden (the CR4 policy does not yet give PCIDE to the guest), as are
//!   features whose MSRs the MSR policy does not emulate: MTRR, PAT, MCE/MCA, perfmon,
//!   debug store, thermal/power leaves 6 and 0xA, TSC_ADJUST, RDTSCP/RDPID (TSC_AUX),
//!   speculation-control MSRs, and the invariant-TSC bit.
//! - Topology is one logical processor per package: leaf 1 EBX and leaf 4 say so, HTT is
//!   off, and leaves 0xB/0x1F are zero (beyond the clamped maximum leaf).
//! - The TSC's rate, where the kernel measured it ([`CpuidConfig::tsc_hz`]): leaf 0x15
//!   (TSC/crystal ratio and crystal rate, from which Linux takes the TSC rate as known and
//!   skips calibrating it against the PIT), leaf 0x16 (base and maximum MHz) and the
//!   hypervisor timing leaf 0x4000_0010 (TSC kHz in EAX, LAPIC bus kHz in EBX, as VMware
//!   and KVM define it). The APIC timer runs at the crystal clock of leaf 0x15
//!   ([`CpuidTable::crystal_hz`]), as Linux assumes when it takes the timer's rate from
//!   that leaf instead of calibrating it. The maximum basic leaf
//!   rises to 0x16 for them; the leaves between that this file does not name are zero.
//!   Without a known rate the maximum stays at most 0xD and those leaves are zero.
//! - An out-of-range leaf returns the highest basic leaf, as Intel CPUs do.

/// EAX, EBX, ECX, EDX of one CPUID leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuidRegs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// The 12-byte vendor signature of leaf 0x4000_0000 (EBX, ECX, EDX).
pub const HYPERVISOR_SIGNATURE: [u8; 12] = *b"CapVMMCapVMM";

/// First hypervisor leaf.
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// Last hypervisor leaf this VMM defines: the timing leaf. Leaves 0x4000_0001 to
/// 0x4000_000F are zero.
pub const HYPERVISOR_MAX: u32 = 0x4000_0010;
/// The hypervisor timing leaf (VMware's, which KVM adopted): EAX TSC kHz, EBX LAPIC bus kHz.
pub const HYPERVISOR_TIMING: u32 = 0x4000_0010;
/// Leaf 0x15: the TSC/crystal-clock ratio and the crystal clock's rate.
pub const TSC_LEAF: u32 = 0x15;
/// Leaf 0x16: processor base, maximum and bus frequencies in MHz.
pub const FREQUENCY_LEAF: u32 = 0x16;
/// The highest basic leaf offered without a known TSC rate.
const MAX_BASIC_WITHOUT_TSC: u32 = 0xd;

/// Leaf 0x4000_0000: the highest hypervisor leaf and the signature, as EBX, ECX, EDX.
const HYPERVISOR_LEAF: CpuidRegs = {
    let [a, b, c, d, e, f, g, h, i, j, k, l] = HYPERVISOR_SIGNATURE;
    CpuidRegs {
        eax: HYPERVISOR_MAX,
        ebx: u32::from_le_bytes([a, b, c, d]),
        ecx: u32::from_le_bytes([e, f, g, h]),
        edx: u32::from_le_bytes([i, j, k, l]),
    }
};
/// First extended leaf.
pub const EXTENDED_BASE: u32 = 0x8000_0000;
/// Last extended leaf passed on.
pub const EXTENDED_MAX: u32 = 0x8000_0008;

/// Leaf 1 ECX: MONITOR/MWAIT.
pub const L1_ECX_MONITOR: u32 = 1 << 3;
/// Leaf 1 ECX: VMX.
pub const L1_ECX_VMX: u32 = 1 << 5;
/// Leaf 1 ECX: PCID.
pub const L1_ECX_PCID: u32 = 1 << 17;
/// Leaf 1 ECX: x2APIC.
pub const L1_ECX_X2APIC: u32 = 1 << 21;
/// Leaf 1 ECX: TSC-deadline mode of the APIC timer.
pub const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 ECX: XSAVE.
pub const L1_ECX_XSAVE: u32 = 1 << 26;
/// Leaf 1 ECX: running under a hypervisor.
pub const L1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: local APIC.
pub const L1_EDX_APIC: u32 = 1 << 9;

/// Leaf 1 ECX features passed on: SSE3, PCLMULQDQ, SSSE3, CX16, SSE4.1, SSE4.2, MOVBE,
/// POPCNT, AES, RDRAND.
const L1_ECX_ALLOWED: u32 =
    1 << 0 | 1 << 1 | 1 << 9 | 1 << 13 | 1 << 19 | 1 << 20 | 1 << 22 | 1 << 23 | 1 << 25 | 1 << 30;
/// Leaf 1 EDX features passed on: FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, SEP, PGE, CMOV,
/// PSE36, CLFSH, MMX, FXSR, SSE, SSE2, SS.
const L1_EDX_ALLOWED: u32 = 1 << 0
    | 1 << 1
    | 1 << 2
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 8
    | 1 << 11
    | 1 << 13
    | 1 << 15
    | 1 << 17
    | 1 << 19
    | 1 << 23
    | 1 << 24
    | 1 << 25
    | 1 << 26
    | 1 << 27;
/// Leaf 7.0 EBX: FSGSBASE, BMI1, SMEP, BMI2, ERMS, ADX, SMAP, CLFLUSHOPT, CLWB, SHA.
const L7_EBX_ALLOWED: u32 =
    1 << 0 | 1 << 3 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 19 | 1 << 20 | 1 << 23 | 1 << 24 | 1 << 29;
/// Leaf 7.0 ECX: UMIP, GFNI.
const L7_ECX_ALLOWED: u32 = 1 << 2 | 1 << 8;
/// Leaf 7.0 EDX: FSRM, MD_CLEAR, SERIALIZE.
const L7_EDX_ALLOWED: u32 = 1 << 4 | 1 << 10 | 1 << 14;
/// Leaf 0x8000_0001 ECX: LAHF/SAHF, LZCNT, PREFETCHW.
const E1_ECX_ALLOWED: u32 = 1 << 0 | 1 << 5 | 1 << 8;
/// Leaf 0x8000_0001 EDX: SYSCALL, NX, 1 GiB pages, long mode.
const E1_EDX_ALLOWED: u32 = 1 << 11 | 1 << 20 | 1 << 26 | 1 << 29;

/// Knobs of the policy; the defaults are the choices listed in the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidConfig {
    /// Highest basic leaf offered (clamped to 0x16 where the TSC rate is known, to the
    /// host's and to 0xD where it is not).
    pub max_basic_leaf: u32,
    /// Offer MONITOR/MWAIT (leaf 1 ECX bit 3 and leaf 5).
    pub allow_mwait: bool,
    /// Offer the local APIC model: leaf 1 EDX bit 9, x2APIC and TSC-deadline.
    pub expose_apic: bool,
    /// The initial APIC ID reported in leaf 1 EBX bits 31:24.
    pub apic_id: u8,
    /// The guest's TSC rate in Hz, offered in leaves 0x15, 0x16 and 0x4000_0010 (0:
    /// unknown, none offered). `Vm::new` sets it from the VM's clock.
    pub tsc_hz: u64,
}

impl Default for CpuidConfig {
    fn default() -> Self {
        Self {
            max_basic_leaf: FREQUENCY_LEAF,
            allow_mwait: false,
            expose_apic: true,
            apic_id: 0,
            tsc_hz: 0,
        }
    }
}

/// One snapshotted leaf.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    leaf: u32,
    subleaf: u32,
    regs: CpuidRegs,
}

/// Most leaves (counting subleaves) a table holds.
const CAPACITY: usize = 48;
/// Leaf 4 subleaves kept at most (cache levels).
const MAX_CACHE_SUBLEAVES: u32 = 8;

/// The guest's CPUID values.
#[derive(Clone, Debug)]
pub struct CpuidTable {
    entries: [Entry; CAPACITY],
    len: usize,
    max_basic: u32,
    max_extended: u32,
    /// Leaf 0x4000_0010.
    timing: CpuidRegs,
}

/// Whether `leaf`'s values depend on ECX.
fn indexed(leaf: u32) -> bool {
    matches!(leaf, 4 | 7 | 0xb | 0xd | 0xf | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 | 0x1f)
}

impl CpuidTable {
    /// Build the guest table from the host's CPUID, `host(leaf, subleaf)`.
    pub fn from_host(config: &CpuidConfig, mut host: impl FnMut(u32, u32) -> CpuidRegs) -> Self {
        let mut t = Self {
            entries: [Entry::default(); CAPACITY],
            len: 0,
            max_basic: 0,
            max_extended: 0,
            timing: timing_leaf(config.tsc_hz),
        };
        let leaf0 = host(0, 0);
        let limit =
            if config.tsc_hz != 0 { FREQUENCY_LEAF } else { leaf0.eax.min(MAX_BASIC_WITHOUT_TSC) };
        t.max_basic = config.max_basic_leaf.min(limit);
        for leaf in 0..=t.max_basic {
            if leaf == 4 {
                for sub in 0..MAX_CACHE_SUBLEAVES {
                    let raw = host(4, sub);
                    t.push(4, sub, filter_leaf(config, 4, raw));
                    // Cache type 0: no more caches.
                    if raw.eax & 0x1f == 0 {
                        break;
                    }
                }
                continue;
            }
            // A leaf above the host's own maximum is this VMM's alone (0x15, 0x16): the
            // host would answer with its highest leaf.
            let raw = match leaf {
                0 => leaf0,
                _ if leaf > leaf0.eax => CpuidRegs::default(),
                _ => host(leaf, 0),
            };
            let mut regs = filter_leaf(config, leaf, raw);
            if leaf == 0 {
                regs.eax = t.max_basic;
            }
            t.push(leaf, 0, regs);
        }
        let ext0 = host(EXTENDED_BASE, 0);
        t.max_extended =
            if ext0.eax >= EXTENDED_BASE { ext0.eax.min(EXTENDED_MAX) } else { EXTENDED_BASE };
        for leaf in EXTENDED_BASE..=t.max_extended {
            let raw = if leaf == EXTENDED_BASE { ext0 } else { host(leaf, 0) };
            let mut regs = filter_leaf(config, leaf, raw);
            if leaf == EXTENDED_BASE {
                regs.eax = t.max_extended;
            }
            t.push(leaf, 0, regs);
        }
        t
    }

    fn push(&mut self, leaf: u32, subleaf: u32, regs: CpuidRegs) {
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = Entry { leaf, subleaf, regs };
            self.len = self.len.saturating_add(1);
        }
    }

    fn find(&self, leaf: u32, subleaf: u32) -> Option<CpuidRegs> {
        let sub = if indexed(leaf) { subleaf } else { 0 };
        self.entries
            .get(..self.len)
            .unwrap_or(&[])
            .iter()
            .find(|e| e.leaf == leaf && e.subleaf == sub)
            .map(|e| e.regs)
    }

    /// Leaf 1's initial APIC ID (EBX bits 31:24) becomes `id`: a VM of several vCPUs
    /// sets the served vCPU's whenever it switches (so CPUID itself never asks which).
    pub fn set_apic_id(&mut self, id: u8) {
        let len = self.len;
        if let Some(e) =
            self.entries.get_mut(..len).and_then(|es| es.iter_mut().find(|e| e.leaf == 1))
        {
            e.regs.ebx = e.regs.ebx & 0x00ff_ffff | u32::from(id) << 24;
        }
    }

    /// Highest basic leaf the guest sees.
    pub fn max_basic_leaf(&self) -> u32 {
        self.max_basic
    }

    /// What the guest's CPUID returns for EAX = `leaf`, ECX = `subleaf`.
    pub fn lookup(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        if leaf == HYPERVISOR_BASE {
            return HYPERVISOR_LEAF;
        }
        if (HYPERVISOR_BASE..=HYPERVISOR_MAX).contains(&leaf) {
            return if leaf == HYPERVISOR_TIMING { self.timing } else { CpuidRegs::default() };
        }
        let in_range =
            leaf <= self.max_basic || (EXTENDED_BASE..=self.max_extended).contains(&leaf);
        if in_range {
            // Indexed leaves beyond the snapshotted subleaves are all zero.
            return self.find(leaf, subleaf).unwrap_or_default();
        }
        self.find(self.max_basic, subleaf).unwrap_or_default()
    }

    /// Leaf 1 EDX.
    fn l1_edx(&self) -> u32 {
        self.lookup(1, 0).edx
    }

    /// The CR4 bits a guest with these CPUID values may set: each needs its feature.
    pub fn cr4_allowed(&self) -> u64 {
        let l1 = self.lookup(1, 0);
        let l7 = self.lookup(7, 0);
        let has = |reg: u32, bit: u32| reg & (1 << bit) != 0;
        let mut allowed = 1 << 2 | 1 << 8; // TSD, PCE: no feature bit gates them.
        let pairs: [(bool, u64); 14] = [
            (has(l1.edx, 1), 1 << 0 | 1 << 1), // VME, PVI
            (has(l1.edx, 2), 1 << 3),          // DE
            (has(l1.edx, 3), 1 << 4),          // PSE
            (has(l1.edx, 6), 1 << 5),          // PAE
            (has(l1.edx, 7), 1 << 6),          // MCE
            (has(l1.edx, 13), 1 << 7),         // PGE
            (has(l1.edx, 24), 1 << 9),         // OSFXSR
            (has(l1.edx, 25), 1 << 10),        // OSXMMEXCPT
            (has(l7.ecx, 2), 1 << 11),         // UMIP
            (has(l7.ebx, 0), 1 << 16),         // FSGSBASE
            (has(l1.ecx, 17), 1 << 17),        // PCIDE
            (has(l1.ecx, 26), 1 << 18),        // OSXSAVE
            (has(l7.ebx, 7), 1 << 20),         // SMEP
            (has(l7.ebx, 20), 1 << 21),        // SMAP
        ];
        for (present, bits) in pairs {
            if present {
                allowed |= bits;
            }
        }
        allowed
    }

    /// The IA32_EFER bits a guest with these CPUID values may set.
    pub fn efer_allowed(&self) -> u64 {
        let e1 = self.lookup(EXTENDED_BASE.wrapping_add(1), 0);
        let mut allowed = 0;
        if e1.edx & (1 << 11) != 0 {
            allowed |= 1 << 0; // SCE
        }
        if e1.edx & (1 << 29) != 0 {
            allowed |= 1 << 8 | 1 << 10; // LME, LMA
        }
        if e1.edx & (1 << 20) != 0 {
            allowed |= 1 << 11; // NXE
        }
        allowed
    }

    /// Whether the guest is told about MONITOR/MWAIT.
    pub fn has_monitor(&self) -> bool {
        self.lookup(1, 0).ecx & L1_ECX_MONITOR != 0
    }

    /// Whether the guest is told about a local APIC.
    pub fn has_apic(&self) -> bool {
        self.l1_edx() & L1_EDX_APIC != 0
    }

    /// Whether the guest is told about x2APIC mode.
    pub fn has_x2apic(&self) -> bool {
        self.lookup(1, 0).ecx & L1_ECX_X2APIC != 0
    }

    /// The crystal clock of leaf 0x15 in Hz (0: not offered): the APIC timer's rate.
    pub fn crystal_hz(&self) -> u64 {
        if self.max_basic < TSC_LEAF {
            return 0;
        }
        u64::from(self.lookup(TSC_LEAF, 0).ecx)
    }

    /// The guest's MAXPHYADDR (leaf 0x8000_0008 EAX bits 7:0; 36 where not reported).
    pub fn phys_addr_bits(&self) -> u8 {
        let leaf = EXTENDED_BASE.wrapping_add(8);
        match self.lookup(leaf, 0).eax as u8 {
            0 => 36,
            _ if self.max_extended < leaf => 36,
            bits => bits,
        }
    }
}

/// Leaf 0x15 for a TSC of `tsc_hz`: TSC = crystal (ECX) × EBX / EAX. Linux takes
/// `ECX / 1000 × EBX / EAX` as the TSC's kHz, so the crystal is a whole number of kHz, and
/// the ratio is the smallest that fits the crystal into ECX.
fn tsc_leaf(tsc_hz: u64) -> CpuidRegs {
    let khz = tsc_hz / 1000;
    let ratio = khz.div_ceil(u64::from(u32::MAX) / 1000).max(1);
    let crystal = khz.checked_div(ratio).unwrap_or(0).saturating_mul(1000);
    CpuidRegs {
        eax: 1,
        ebx: u32::try_from(ratio).unwrap_or(u32::MAX),
        ecx: u32::try_from(crystal).unwrap_or(u32::MAX),
        edx: 0,
    }
}

/// Leaf 0x16: the base and maximum frequency are the TSC's (bits 15:0, MHz); no bus
/// frequency is reported.
fn frequency_leaf(tsc_hz: u64) -> CpuidRegs {
    let mhz = u32::try_from(tsc_hz / 1_000_000).unwrap_or(u32::MAX).min(0xffff);
    CpuidRegs { eax: mhz, ebx: mhz, ecx: 0, edx: 0 }
}

/// Leaf 0x4000_0010: the TSC's kHz and the APIC timer's (the crystal of leaf 0x15); all
/// zero without a known rate.
fn timing_leaf(tsc_hz: u64) -> CpuidRegs {
    let khz = u32::try_from(tsc_hz / 1000).unwrap_or(u32::MAX);
    let bus_khz = tsc_leaf(tsc_hz).ecx / 1000;
    CpuidRegs { eax: khz, ebx: bus_khz, ..CpuidRegs::default() }
}

/// Apply the policy to one host leaf.
fn filter_leaf(config: &CpuidConfig, leaf: u32, host: CpuidRegs) -> CpuidRegs {
    let zero = CpuidRegs::default();
    match leaf {
        // Vendor string and family/model/stepping, cache descriptors: as the host.
        0 | 2 => host,
        1 => {
            let mut ecx = host.ecx & L1_ECX_ALLOWED;
            if config.allow_mwait {
                ecx |= host.ecx & L1_ECX_MONITOR;
            }
            let mut edx = host.edx & L1_EDX_ALLOWED;
            if config.expose_apic {
                edx |= L1_EDX_APIC;
                ecx |= L1_ECX_X2APIC | L1_ECX_TSC_DEADLINE;
            }
            CpuidRegs {
                eax: host.eax,
                // Brand index and CLFLUSH size stay; one logical CPU; our APIC ID.
                ebx: (host.ebx & 0xffff) | 1 << 16 | u32::from(config.apic_id) << 24,
                ecx: ecx | L1_ECX_HYPERVISOR,
                edx,
            }
        }
        // Deterministic cache parameters: one core and one thread share each cache.
        4 => CpuidRegs { eax: host.eax & 0x0000_3fff, ..host },
        5 if config.allow_mwait => host,
        7 => CpuidRegs {
            // Subleaf 0 only: report no further subleaves.
            eax: 0,
            ebx: host.ebx & L7_EBX_ALLOWED,
            ecx: host.ecx & L7_ECX_ALLOWED,
            edx: host.edx & L7_EDX_ALLOWED,
        },
        // Extended maximum and, on AMD, the vendor string again.
        EXTENDED_BASE => host,
        0x8000_0001 => CpuidRegs {
            eax: host.eax,
            ebx: 0,
            ecx: host.ecx & E1_ECX_ALLOWED,
            edx: host.edx & E1_EDX_ALLOWED,
        },
        // Brand string and L2 cache description.
        0x8000_0002..=0x8000_0004 | 0x8000_0006 => host,
        TSC_LEAF if config.tsc_hz != 0 => tsc_leaf(config.tsc_hz),
        FREQUENCY_LEAF if config.tsc_hz != 0 => frequency_leaf(config.tsc_hz),
        // Physical and linear address widths only.
        0x8000_0008 => CpuidRegs { eax: host.eax & 0xffff, ..zero },
        _ => zero,
    }
}

#[cfg(test)]
mod tests {
    use super::{
        CpuidConfig, CpuidRegs, CpuidTable, HYPERVISOR_BASE, L1_ECX_HYPERVISOR, L1_ECX_MONITOR,
        L1_ECX_PCID, L1_ECX_TSC_DEADLINE, L1_ECX_VMX, L1_ECX_X2APIC, L1_ECX_XSAVE, L1_EDX_APIC,
    };

    fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidRegs {
        CpuidRegs { eax, ebx, ecx, edx }
    }

    /// A plausible Intel host: max basic leaf 0x16, four cache levels, most features on.
    fn host(leaf: u32, sub: u32) -> CpuidRegs {
        match (leaf, sub) {
            (0, _) => regs(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69), // "GenuineIntel"
            (1, _) => regs(0x000906ea, 0x0810_0800, 0x7ffa_fbff, 0xbfeb_fbff),
            (4, 0..=3) => regs(0x1c00_4121 + sub, 0x01c0_003f, 0x3f, 0),
            (4, _) => regs(0, 0, 0, 0),
            (5, _) => regs(0x40, 0x40, 3, 0x0011_2120),
            (6, _) => regs(0x27f7, 2, 9, 0),
            (7, 0) => regs(0, 0x029c_6fbf, 0x4000_0000, 0xbc00_0400),
            (0xa, _) => regs(0x0760_3004, 0, 0, 0x603),
            (0xb, _) => regs(1, 2, 0x100, 4),
            (0xd, _) => regs(0x1f, 0x440, 0x440, 0),
            (0x8000_0000, _) => regs(0x8000_0008, 0, 0, 0),
            (0x8000_0001, _) => regs(0, 0, 0x121, 0x2c10_0800),
            (0x8000_0002, _) => regs(0x6574_6e49, 0x2952_286c, 0x726f_4320, 0x4d54_2865),
            (0x8000_0007, _) => regs(0, 0, 0, 0x100),
            (0x8000_0008, _) => regs(0x3027, 0x0100_0000, 0, 0),
            _ => regs(0xdead, 0xbeef, 0xdead, 0xbeef),
        }
    }

    fn table(config: CpuidConfig) -> CpuidTable {
        CpuidTable::from_host(&config, host)
    }

    #[test]
    fn leaf0_keeps_the_vendor_and_clamps_the_maximum() {
        let t = table(CpuidConfig::default());
        assert_eq!(t.lookup(0, 0), regs(0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        assert_eq!(t.max_basic_leaf(), 0xd);
    }

    #[test]
    fn leaf1_hides_vmx_and_sets_the_hypervisor_bit() {
        let t = table(CpuidConfig::default());
        let l1 = t.lookup(1, 0);
        assert_eq!(l1.eax, 0x000906ea);
        assert_eq!(l1.ecx & L1_ECX_VMX, 0);
        assert_ne!(l1.ecx & L1_ECX_HYPERVISOR, 0);
        for hidden in [L1_ECX_MONITOR, L1_ECX_PCID, L1_ECX_XSAVE, 1 << 28] {
            assert_eq!(l1.ecx & hidden, 0, "{hidden:#x}");
        }
        // The APIC is the VMM's model, offered whatever the host has.
        assert_eq!(
            l1.ecx & (L1_ECX_X2APIC | L1_ECX_TSC_DEADLINE),
            L1_ECX_X2APIC | L1_ECX_TSC_DEADLINE
        );
        assert_ne!(l1.edx & L1_EDX_APIC, 0);
        let bare = table(CpuidConfig { expose_apic: false, ..CpuidConfig::default() }).lookup(1, 0);
        assert_eq!(bare.ecx & (L1_ECX_X2APIC | L1_ECX_TSC_DEADLINE), 0);
        assert_eq!(bare.edx & L1_EDX_APIC, 0);
        assert_eq!(l1.edx & (1 << 28), 0, "HTT");
        assert_eq!(l1.edx & (1 << 12 | 1 << 16 | 1 << 14 | 1 << 7), 0, "MTRR PAT MCA MCE");
        // x86-64 Linux's required features survive.
        for needed in [0u32, 3, 4, 5, 6, 8, 13, 15, 24, 25, 26] {
            assert_ne!(l1.edx & (1 << needed), 0, "EDX bit {needed}");
        }
        assert_eq!(l1.ebx, 0x0001_0800, "one logical CPU, APIC ID 0, CLFLUSH 64 bytes");
        assert_eq!(t.lookup(1, 7), l1, "leaf 1 ignores ECX");
    }

    #[test]
    fn config_knobs() {
        let t = table(CpuidConfig {
            allow_mwait: true,
            expose_apic: true,
            apic_id: 3,
            ..CpuidConfig::default()
        });
        let l1 = t.lookup(1, 0);
        assert_ne!(l1.ecx & L1_ECX_MONITOR, 0);
        assert_ne!(l1.edx & L1_EDX_APIC, 0);
        assert!(t.has_apic());
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!(t.lookup(5, 0), host(5, 0));
        assert_eq!(table(CpuidConfig::default()).lookup(5, 0), CpuidRegs::default());
        let small = table(CpuidConfig { max_basic_leaf: 4, ..CpuidConfig::default() });
        assert_eq!(small.lookup(0, 0).eax, 4);
    }

    #[test]
    fn hypervisor_leaves() {
        let t = table(CpuidConfig::default());
        let h = t.lookup(HYPERVISOR_BASE, 0);
        assert_eq!(h.eax, 0x4000_0010);
        let mut sig = Vec::new();
        for r in [h.ebx, h.ecx, h.edx] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"CapVMMCapVMM");
        for leaf in 0x4000_0001..=0x4000_0010 {
            assert_eq!(t.lookup(leaf, 0), CpuidRegs::default(), "{leaf:#x}");
        }
    }

    /// Linux's reading of leaf 0x15: `ECX / 1000 * EBX / EAX` kHz.
    fn linux_tsc_khz(l: CpuidRegs) -> u64 {
        u64::from(l.ecx / 1000) * u64::from(l.ebx) / u64::from(l.eax)
    }

    #[test]
    fn a_known_tsc_rate_is_offered_in_leaves_15_16_and_0x40000010() {
        let t = table(CpuidConfig { tsc_hz: 2_112_345_678, ..CpuidConfig::default() });
        assert_eq!(t.max_basic_leaf(), 0x16);
        assert_eq!(t.lookup(0, 0).eax, 0x16);
        let l15 = t.lookup(0x15, 0);
        assert_eq!(l15, regs(1, 1, 2_112_345_000, 0));
        assert_eq!(linux_tsc_khz(l15), 2_112_345);
        assert_eq!(t.lookup(0x16, 0), regs(2112, 2112, 0, 0));
        // The APIC timer runs at the crystal clock: Linux takes its rate from leaf 0x15.
        assert_eq!(t.lookup(0x4000_0010, 0), regs(2_112_345, 2_112_345, 0, 0));
        assert_eq!(t.crystal_hz(), 2_112_345_000);
        for leaf in [0xe, 0x10, 0x12, 0x14] {
            assert_eq!(t.lookup(leaf, 0), CpuidRegs::default(), "{leaf:#x}");
        }
        assert_eq!(t.lookup(0x17, 0), t.lookup(0x16, 0), "out of range: the highest leaf");
        // A TSC faster than ECX can count in Hz: a ratio of 2.
        let fast = table(CpuidConfig { tsc_hz: 5_000_000_000, ..CpuidConfig::default() });
        let l15 = fast.lookup(0x15, 0);
        assert_eq!((l15.eax, l15.ebx), (1, 2));
        assert_eq!(linux_tsc_khz(l15), 5_000_000);
        // A host whose own maximum is lower: the VMM's leaves still, the host's not asked.
        let old = CpuidTable::from_host(
            &CpuidConfig { tsc_hz: 1_000_000_000, ..CpuidConfig::default() },
            |leaf, sub| match leaf {
                0 => regs(0xb, 0, 0, 0),
                0xc.. if leaf < 0x8000_0000 => panic!("leaf {leaf:#x} asked of the host"),
                _ => host(leaf, sub),
            },
        );
        assert_eq!(old.lookup(0x16, 0).eax, 1000);
        // A configured maximum below 0x15 offers none of it.
        let clamped = table(CpuidConfig { tsc_hz: 1, max_basic_leaf: 0xd, ..Default::default() });
        assert_eq!(clamped.max_basic_leaf(), 0xd);
    }

    #[test]
    fn cache_leaf_subleaves_and_topology() {
        let t = table(CpuidConfig::default());
        for sub in 0..4 {
            let l4 = t.lookup(4, sub);
            assert_eq!(l4.eax, (0x1c00_4121 + sub) & 0x3fff);
            assert_eq!(l4.ebx, 0x01c0_003f);
        }
        assert_eq!(t.lookup(4, 4), CpuidRegs::default());
        assert_eq!(t.lookup(4, 99), CpuidRegs::default());
        assert_eq!(t.lookup(0xb, 0), CpuidRegs::default());
    }

    #[test]
    fn leaf7_allowlist() {
        let t = table(CpuidConfig::default());
        let l7 = t.lookup(7, 0);
        assert_eq!(l7.eax, 0);
        // FSGSBASE, BMI1, SMEP, BMI2, ERMS, ADX, SMAP, CLFLUSHOPT of the host survive;
        // AVX2 (5), INVPCID (10), RTM (11), MPX (14), AVX-512 (16) do not.
        assert_eq!(l7.ebx & (1 << 5 | 1 << 10 | 1 << 11 | 1 << 14 | 1 << 16), 0);
        assert_ne!(l7.ebx & (1 << 0 | 1 << 7 | 1 << 20), 0);
        assert_eq!(l7.ecx, 0, "no RDPID");
        assert_eq!(l7.edx, 1 << 10, "MD_CLEAR only; no speculation-control MSRs");
        assert_eq!(t.lookup(7, 1), CpuidRegs::default());
    }

    #[test]
    fn power_perf_xsave_leaves_are_zero() {
        let t = table(CpuidConfig::default());
        for leaf in [3, 6, 0xa, 0xd] {
            assert_eq!(t.lookup(leaf, 0), CpuidRegs::default(), "leaf {leaf:#x}");
        }
    }

    #[test]
    fn extended_leaves() {
        let t = table(CpuidConfig::default());
        assert_eq!(t.lookup(0x8000_0000, 0).eax, 0x8000_0008);
        let e1 = t.lookup(0x8000_0001, 0);
        assert_eq!(e1.edx, 0x2410_0800, "SYSCALL NX 1GB-pages LM, no RDTSCP");
        assert_eq!(e1.ecx, 0x121);
        assert_eq!(t.lookup(0x8000_0002, 0), host(0x8000_0002, 0));
        assert_eq!(t.lookup(0x8000_0007, 0), CpuidRegs::default(), "no invariant TSC");
        assert_eq!(t.lookup(0x8000_0008, 0), regs(0x3027, 0, 0, 0));
    }

    #[test]
    fn out_of_range_leaves_return_the_highest_basic_leaf() {
        let t = table(CpuidConfig::default());
        let top = t.lookup(0xd, 0);
        assert_eq!(t.lookup(0x14, 0), top);
        assert_eq!(t.lookup(0x4000_0011, 0), top);
        assert_eq!(t.lookup(0x8000_0009, 0), top);
        assert_eq!(t.lookup(u32::MAX, u32::MAX), t.lookup(0xd, u32::MAX));
    }

    #[test]
    fn derived_cr4_and_efer_masks() {
        let t = table(CpuidConfig::default());
        let cr4 = t.cr4_allowed();
        assert_eq!(cr4 & (1 << 13), 0, "VMXE");
        assert_eq!(cr4 & (1 << 17 | 1 << 18 | 1 << 12), 0, "PCIDE OSXSAVE LA57");
        assert_eq!(cr4 & (1 << 5 | 1 << 7 | 1 << 9 | 1 << 10 | 1 << 20), 0x10_06a0);
        assert_eq!(t.efer_allowed(), 0xd01);
        // A host without long mode gives a guest without LME.
        let t32 = CpuidTable::from_host(&CpuidConfig::default(), |leaf, sub| match leaf {
            0x8000_0001 => regs(0, 0, 0, 0),
            _ => host(leaf, sub),
        });
        assert_eq!(t32.efer_allowed(), 0);
    }

    #[test]
    fn a_host_without_extended_leaves() {
        let t = CpuidTable::from_host(&CpuidConfig::default(), |leaf, _| match leaf {
            0 => regs(1, 0, 0, 0),
            _ => regs(0, 0, 0, 0),
        });
        assert_eq!(t.lookup(0x8000_0000, 0).eax, 0x8000_0000);
        assert_eq!(t.max_basic_leaf(), 1);
        assert_eq!(t.efer_allowed(), 0);
    }
}
