//! The tables read back by an independent reader: every offset and value below is the
//! ACPI specification's number, written out here rather than taken from the modules'
//! constants, so a wrong constant cannot agree with itself.

use super::{
    build, dsdt, layout, AcpiConfig, AcpiError, AcpiLayout, InterruptOverride, Polarity, Trigger,
    STANDARD_BASE, STANDARD_REGION_LEN,
};
use crate::bus::BusDevice;
use crate::devices::acpi_pm::{self, AcpiPm};
use crate::devices::lapic;

/// Guest memory holding the tables at `base`.
struct Mem {
    base: u64,
    bytes: Vec<u8>,
}

impl Mem {
    fn at(&self, gpa: u64, len: usize) -> &[u8] {
        let off = (gpa - self.base) as usize;
        &self.bytes[off..off + len]
    }
    fn u8(&self, gpa: u64) -> u8 {
        self.at(gpa, 1)[0]
    }
    fn u16(&self, gpa: u64) -> u16 {
        u16::from_le_bytes(self.at(gpa, 2).try_into().unwrap())
    }
    fn u32(&self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.at(gpa, 4).try_into().unwrap())
    }
    fn u64(&self, gpa: u64) -> u64 {
        u64::from_le_bytes(self.at(gpa, 8).try_into().unwrap())
    }

    /// The table at `gpa` after checking its signature, its length and its checksum.
    fn table(&self, gpa: u64, signature: &[u8; 4]) -> &[u8] {
        assert_eq!(self.at(gpa, 4), signature, "signature at {gpa:#x}");
        let len = self.u32(gpa + 4) as usize;
        assert!(len >= 36, "{signature:?} length {len}");
        let t = self.at(gpa, len);
        assert_eq!(sum(t), 0, "{signature:?} checksum");
        t
    }
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

/// The tables for `config` at `base`, built into a 128 KiB region that starts as 0xA5.
fn built(config: &AcpiConfig<'_>, base: u64) -> (Mem, AcpiLayout) {
    let mut bytes = vec![0xa5u8; STANDARD_REGION_LEN];
    let layout = build(config, base, &mut bytes).unwrap();
    (Mem { base, bytes }, layout)
}

fn standard() -> (Mem, AcpiLayout) {
    built(&AcpiConfig::standard(&[0]), STANDARD_BASE)
}

/// The MADT's interrupt controller structures as (type, bytes after type and length).
fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut at = 44;
    while at < madt.len() {
        let (kind, len) = (madt[at], madt[at + 1] as usize);
        assert!(len >= 2 && at + len <= madt.len(), "entry at {at} overruns the table");
        entries.push((kind, madt[at + 2..at + len].to_vec()));
        at += len;
    }
    assert_eq!(at, madt.len(), "the entries fill the table exactly");
    entries
}

/// Decode a PkgLength: the value (which counts its own bytes) and the bytes it takes.
fn decode_pkg_length(b: &[u8]) -> (usize, usize) {
    let follow = (b[0] >> 6) as usize;
    if follow == 0 {
        return ((b[0] & 0x3f) as usize, 1);
    }
    let mut value = (b[0] & 0x0f) as usize;
    for i in 0..follow {
        value |= (b[1 + i] as usize) << (4 + 8 * i);
    }
    (value, 1 + follow)
}

#[test]
fn the_layout_is_the_documented_one() {
    let (mem, l) = standard();
    let off = |a: u64| a - STANDARD_BASE;
    assert_eq!(l.rsdp, STANDARD_BASE);
    assert_eq!(
        [off(l.rsdt), off(l.xsdt), off(l.fadt), off(l.facs), off(l.dsdt), off(l.madt)],
        [40, 88, 144, 448, 512, 568]
    );
    assert_eq!(l.len, 658);
    assert_eq!(layout(&AcpiConfig::standard(&[0]), STANDARD_BASE), Ok(l));
    assert_eq!(l.rsdp % 16, 0);
    assert_eq!(l.facs % 64, 0);
    for a in [l.rsdt, l.xsdt, l.fadt, l.dsdt, l.madt] {
        assert_eq!(a % 8, 0);
    }
    // The gaps between tables are zero; the region past the tables is left as it was.
    for (from, to) in [(36, 40), (84, 88), (140, 144), (420, 448), (562, 568)] {
        assert!(mem.bytes[from..to].iter().all(|&b| b == 0), "gap {from}..{to}");
    }
    assert!(mem.bytes[658..].iter().all(|&b| b == 0xa5));
    // More CPUs move nothing but the MADT's end.
    let four = layout(&AcpiConfig::standard(&[0, 1, 2, 3]), STANDARD_BASE).unwrap();
    assert_eq!(AcpiLayout { len: 658 + 24, ..l }, four);
    // The most CPUs still fit the BIOS area many times over.
    let ids: Vec<u8> = (0..255).collect();
    assert!(layout(&AcpiConfig::standard(&ids), STANDARD_BASE).unwrap().len < 4096);
}

#[test]
fn the_rsdp_has_both_checksums_and_points_at_both_root_tables() {
    let (mem, l) = standard();
    let rsdp = mem.at(l.rsdp, 36);
    assert_eq!(&rsdp[0..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(rsdp), 0, "extended checksum");
    assert_eq!(&rsdp[9..15], b"CAPVMM");
    assert_eq!(rsdp[15], 2, "revision");
    assert_eq!(mem.u32(l.rsdp + 20), 36, "length");
    assert_eq!(mem.u32(l.rsdp + 16) as u64, l.rsdt);
    assert_eq!(mem.u64(l.rsdp + 24), l.xsdt);
    assert_eq!(&rsdp[33..36], &[0, 0, 0], "reserved");
}

#[test]
fn the_root_tables_list_the_fadt_and_the_madt() {
    let (mem, l) = standard();
    let xsdt = mem.table(l.xsdt, b"XSDT");
    assert_eq!(xsdt.len(), 36 + 16);
    assert_eq!([mem.u64(l.xsdt + 36), mem.u64(l.xsdt + 44)], [l.fadt, l.madt]);
    let rsdt = mem.table(l.rsdt, b"RSDT");
    assert_eq!(rsdt.len(), 36 + 8);
    assert_eq!([mem.u32(l.rsdt + 36) as u64, mem.u32(l.rsdt + 40) as u64], [l.fadt, l.madt]);
    // Each pointer leads to the table it should.
    mem.table(l.fadt, b"FACP");
    mem.table(l.madt, b"APIC");
    mem.table(mem.u64(l.fadt + 140), b"DSDT");
    assert_eq!(mem.at(mem.u32(l.fadt + 36) as u64, 4), b"FACS");
}

#[test]
fn every_table_names_the_project_and_its_revision() {
    let (mem, l) = standard();
    for (gpa, sig, rev, len) in [
        (l.rsdt, b"RSDT", 1, 44),
        (l.xsdt, b"XSDT", 1, 52),
        (l.fadt, b"FACP", 6, 276),
        (l.dsdt, b"DSDT", 2, 50),
        (l.madt, b"APIC", 5, 90),
    ] {
        let t = mem.table(gpa, sig);
        assert_eq!(t.len(), len, "{sig:?}");
        assert_eq!(t[8], rev, "{sig:?} revision");
        assert_eq!(&t[10..16], b"CAPVMM");
        assert_eq!(&t[16..20], b"CAPV");
        assert_eq!(&t[20..24], sig, "OEM table ID ends with the signature");
        assert_eq!(u32::from_le_bytes(t[24..28].try_into().unwrap()), 1);
        assert_eq!(&t[28..32], b"CVMM");
    }
}

#[test]
fn the_madt_lists_each_cpu_the_ioapic_the_overrides_and_the_nmi() {
    let ids = [0u8, 1, 2, 7];
    let (mem, l) = built(&AcpiConfig::standard(&ids), STANDARD_BASE);
    let madt = mem.table(l.madt, b"APIC");
    assert_eq!(mem.u32(l.madt + 36), 0xfee0_0000, "local APIC address");
    assert_eq!(mem.u32(l.madt + 40), 1, "PCAT_COMPAT");
    let entries = madt_entries(madt);
    let lapics: Vec<_> = entries.iter().filter(|e| e.0 == 0).map(|e| e.1.clone()).collect();
    assert_eq!(lapics.len(), 4);
    for (i, (e, id)) in lapics.iter().zip(ids).enumerate() {
        // UID, APIC ID, flags (enabled).
        assert_eq!(e, &[i as u8, id, 1, 0, 0, 0]);
    }
    let ioapics: Vec<_> = entries.iter().filter(|e| e.0 == 1).collect();
    assert_eq!(ioapics.len(), 1);
    // ID 0, reserved, address 0xFEC00000, GSI base 0.
    assert_eq!(ioapics[0].1, [0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]);
    let isos: Vec<_> = entries.iter().filter(|e| e.0 == 2).map(|e| e.1.clone()).collect();
    assert_eq!(
        isos,
        [
            // Bus 0 (ISA), IRQ 0 → GSI 2, flags 0 (conforms to the bus: edge, high).
            vec![0, 0, 2, 0, 0, 0, 0x00, 0x00],
            // IRQ 9 → GSI 9, active high (01), level (11 << 2).
            vec![0, 9, 9, 0, 0, 0, 0x0d, 0x00],
        ]
    );
    let nmis: Vec<_> = entries.iter().filter(|e| e.0 == 4).map(|e| e.1.clone()).collect();
    // All processors, flags 0, LINT1.
    assert_eq!(nmis, [vec![0xff, 0, 0, 1]]);
    assert_eq!(entries.len(), 4 + 1 + 2 + 1, "nothing else");
    // Flags of the other polarities and trigger modes.
    let low_edge = InterruptOverride {
        isa_irq: 5,
        gsi: 5,
        polarity: Polarity::ActiveLow,
        trigger: Trigger::Edge,
    };
    assert_eq!(low_edge.flags(), 0b0111);
}

#[test]
fn the_fadt_fields_lie_at_their_spec_offsets() {
    let (mem, l) = standard();
    let f = l.fadt;
    let t = mem.table(f, b"FACP");
    assert_eq!(t.len(), 276);
    assert_eq!(mem.u32(f + 36) as u64, l.facs, "FIRMWARE_CTRL");
    assert_eq!(mem.u32(f + 40) as u64, l.dsdt, "DSDT");
    assert_eq!((mem.u8(f + 44), mem.u8(f + 45)), (0, 0), "reserved, profile unspecified");
    assert_eq!(mem.u16(f + 46), 9, "SCI_INT");
    assert_eq!(mem.u32(f + 48), 0, "SMI_CMD: always in ACPI mode");
    assert_eq!(mem.at(f + 52, 4), &[0, 0, 0, 0], "ACPI_ENABLE/DISABLE, S4BIOS, PSTATE");
    let blocks = [mem.u32(f + 56), mem.u32(f + 60), mem.u32(f + 64), mem.u32(f + 68)];
    assert_eq!(blocks, [0x600, 0, 0x604, 0], "PM1a/b EVT, PM1a/b CNT");
    assert_eq!(mem.u32(f + 72), 0, "PM2_CNT_BLK");
    assert_eq!(mem.u32(f + 76), 0x608, "PM_TMR_BLK");
    assert_eq!((mem.u32(f + 80), mem.u32(f + 84)), (0, 0), "GPE0/1");
    assert_eq!(mem.at(f + 88, 8), &[4, 2, 0, 4, 0, 0, 0, 0], "block lengths, GPE1_BASE, CST");
    assert_eq!((mem.u16(f + 96), mem.u16(f + 98)), (101, 1001), "no C2, no C3");
    assert_eq!(mem.at(f + 100, 8), &[0; 8], "flush, duty, alarms");
    assert_eq!(mem.u8(f + 108), 0x32, "CENTURY");
    // LEGACY_DEVICES | 8042 | VGA not present | MSI not supported | ASPM controls.
    assert_eq!(mem.u16(f + 109), 0x1f, "IAPC_BOOT_ARCH");
    assert_eq!(mem.u8(f + 111), 0);
    // WBINVD | PROC_C1 | PWR_BUTTON | SLP_BUTTON | FIX_RTC | TMR_VAL_EXT | RESET_REG_SUP;
    // not HW_REDUCED_ACPI (bit 20).
    assert_eq!(mem.u32(f + 112), 0x0575, "flags");
    // RESET_REG: system I/O, 8 bits, offset 0, byte access, port 0x64; RESET_VALUE 0xFE.
    assert_eq!(mem.at(f + 116, 4), &[1, 8, 0, 1]);
    assert_eq!(mem.u64(f + 120), 0x64);
    assert_eq!(mem.u8(f + 128), 0xfe);
    assert_eq!(mem.u16(f + 129), 0, "ARM_BOOT_ARCH");
    assert_eq!(mem.u8(f + 131), 4, "FADT minor version: ACPI 6.4");
    assert_eq!(mem.u64(f + 132), 0, "X_FIRMWARE_CTRL: FIRMWARE_CTRL is used");
    assert_eq!(mem.u64(f + 140), l.dsdt, "X_DSDT equals DSDT");
    // X_ blocks: space 1 (I/O), bit width, offset 0, access size, address.
    let gas = |at: u64| (mem.at(at, 4).to_vec(), mem.u64(at + 4));
    assert_eq!(gas(f + 148), (vec![1, 32, 0, 2], 0x600), "X_PM1a_EVT_BLK");
    assert_eq!(gas(f + 172), (vec![1, 16, 0, 2], 0x604), "X_PM1a_CNT_BLK");
    assert_eq!(gas(f + 208), (vec![1, 32, 0, 3], 0x608), "X_PM_TMR_BLK");
    for absent in [160, 184, 196, 220, 232, 244, 256] {
        assert_eq!(mem.at(f + absent, 12), &[0; 12], "generic address at {absent}");
    }
    assert_eq!(mem.at(f + 268, 8), b"CAPVMM\0\0", "hypervisor vendor identity");
    // What ACPICA checks: every X_ block with an address agrees with its 32-bit field in
    // address and (in bits) length.
    for (addr32, len, x) in [(56, 88, 148), (64, 89, 172), (76, 91, 208)] {
        assert_eq!(mem.u64(f + x + 4), mem.u32(f + addr32) as u64);
        assert_eq!(mem.u8(f + x + 1), 8 * mem.u8(f + len));
    }
}

#[test]
fn without_a_reset_register_the_fadt_says_so() {
    let config = AcpiConfig { reset: None, ..AcpiConfig::standard(&[0]) };
    let (mem, l) = built(&config, STANDARD_BASE);
    mem.table(l.fadt, b"FACP");
    assert_eq!(mem.u32(l.fadt + 112) & (1 << 10), 0, "RESET_REG_SUP clear");
    assert_eq!(mem.at(l.fadt + 116, 13), &[0; 13], "RESET_REG and RESET_VALUE zero");
}

#[test]
fn the_facs_is_64_bytes_64_aligned_with_the_global_lock_free() {
    let (mem, l) = standard();
    let facs = mem.at(l.facs, 64);
    assert_eq!(l.facs % 64, 0);
    assert_eq!(&facs[0..4], b"FACS");
    assert_eq!(mem.u32(l.facs + 4), 64);
    assert_eq!(mem.u32(l.facs + 16), 0, "global lock free");
    assert_eq!(facs[32], 2, "version");
    assert!(facs[8..32].iter().chain(&facs[33..]).all(|&b| b == 0));
}

#[test]
fn the_dsdt_defines_s5_and_nothing_else() {
    let (mem, l) = standard();
    let t = mem.table(l.dsdt, b"DSDT");
    assert_eq!(t[8], 2, "revision 2: 64-bit integers");
    let aml = &t[36..];
    assert_eq!(
        aml,
        &[0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00]
    );
    // Decoded: NameOp "_S5_", PackageOp whose PkgLength runs exactly to the table's end.
    assert_eq!((aml[0], &aml[1..5], aml[5]), (0x08, &b"_S5_"[..], 0x12));
    let (pkg_len, used) = decode_pkg_length(&aml[6..]);
    assert_eq!(6 + pkg_len, aml.len(), "the package ends with the table");
    let mut at = 6 + used;
    assert_eq!(aml[at], 4, "NumElements");
    at += 1;
    let mut values = Vec::new();
    while at < aml.len() {
        let (value, len) = match aml[at] {
            0x00 => (0, 1),
            0x01 => (1, 1),
            0x0a => (aml[at + 1] as u64, 2),
            op => panic!("unexpected opcode {op:#x}"),
        };
        values.push(value);
        at += len;
    }
    assert_eq!(values, [5, 5, 0, 0]);
    assert_eq!(values[0], u64::from(acpi_pm::SLP_TYP_S5), "the PM device's S5");
}

#[test]
fn pkg_lengths_decode_to_what_was_encoded() {
    let mut cases: Vec<usize> = (0..80).collect();
    for edge in [1usize << 12, 1 << 20, 1 << 28] {
        cases.extend(edge - 8..edge + 2);
    }
    for contents in cases {
        match dsdt::pkg_length(contents) {
            Some((bytes, used)) => {
                let (value, decoded_used) = decode_pkg_length(&bytes);
                assert_eq!(decoded_used, used, "{contents}");
                assert_eq!(value, contents + used, "{contents}");
                // The shortest form that holds the value.
                let fits_shorter = match used {
                    1 => false,
                    2 => contents + 1 < 64,
                    n => contents + n - 1 < 1 << (4 + 8 * (n - 2)),
                };
                assert!(!fits_shorter, "{contents} in {used} bytes");
            }
            None => assert!(contents + 4 >= 1 << 28, "{contents}"),
        }
    }
    assert_eq!(dsdt::pkg_length(7), Some(([8, 0, 0, 0], 1)));
    assert_eq!(dsdt::pkg_length(62), Some(([63, 0, 0, 0], 1)));
    assert_eq!(dsdt::pkg_length(63), Some(([0x41, 0x04, 0, 0], 2)), "65 = 0x41");
    assert_eq!(dsdt::pkg_length(usize::MAX), None);
}

#[test]
fn each_bad_configuration_is_refused_naming_the_check() {
    let std = AcpiConfig::standard;
    let many: Vec<u8> = (0..=255).collect();
    let isos = [crate::acpi::STANDARD_OVERRIDES[0]; 17];
    let irq16 = [InterruptOverride { isa_irq: 16, ..crate::acpi::STANDARD_OVERRIDES[0] }];
    let cases: [(AcpiConfig<'_>, u64, AcpiError); 8] = [
        (std(&[]), STANDARD_BASE, AcpiError::NoCpus),
        (std(&many), STANDARD_BASE, AcpiError::TooManyCpus { cpus: 256, max: 255 }),
        (std(&[0, 0xff]), STANDARD_BASE, AcpiError::BroadcastApicId),
        (std(&[0, 1, 2, 1]), STANDARD_BASE, AcpiError::DuplicateApicId(1)),
        (
            AcpiConfig { overrides: &isos, ..std(&[0]) },
            STANDARD_BASE,
            AcpiError::TooManyOverrides { count: 17, max: 16 },
        ),
        (AcpiConfig { overrides: &irq16, ..std(&[0]) }, STANDARD_BASE, AcpiError::NotAnIsaIrq(16)),
        (std(&[0]), STANDARD_BASE + 16, AcpiError::MisalignedBase(STANDARD_BASE + 16)),
        (std(&[0]), 0xffff_ff00, AcpiError::AboveFourGiB { end: 0xffff_ff00 + 658 }),
    ];
    for (config, base, want) in cases {
        let mut out = vec![0u8; 4096];
        assert_eq!(build(&config, base, &mut out), Err(want), "{want}");
        assert!(out.iter().all(|&b| b == 0), "nothing written for {want}");
        assert!(!want.to_string().is_empty());
    }
    assert_eq!(layout(&std(&[0]), u64::MAX - 63), Err(AcpiError::AboveFourGiB { end: u64::MAX }));
    // The buffer: one byte short is refused untouched, exactly enough works.
    let mut out = vec![0xa5u8; 657];
    let want = AcpiError::BufferTooSmall { need: 658, have: 657 };
    assert_eq!(build(&std(&[0]), STANDARD_BASE, &mut out), Err(want));
    assert!(out.iter().all(|&b| b == 0xa5));
    let mut out = vec![0u8; 658];
    assert!(build(&std(&[0]), STANDARD_BASE, &mut out).is_ok());
    // The tables may end exactly at 4 GiB; 255 CPUs and 16 overrides are the most.
    assert!(layout(&std(&[0]), (1 << 32) - 704).is_ok());
    let ids: Vec<u8> = (0..255).collect();
    let sixteen: Vec<_> = (0..16)
        .map(|irq| InterruptOverride { isa_irq: irq, ..crate::acpi::STANDARD_OVERRIDES[0] })
        .collect();
    let config = AcpiConfig { overrides: &sixteen, ..std(&ids) };
    let (mem, l) = built(&config, STANDARD_BASE);
    let entries = madt_entries(mem.table(l.madt, b"APIC"));
    assert_eq!(entries.iter().filter(|e| e.0 == 0).count(), 255);
    assert_eq!(entries.iter().filter(|e| e.0 == 2).count(), 16);
    assert_eq!(entries.iter().rfind(|e| e.0 == 0).unwrap().1[..2], [254, 254]);
}

#[test]
fn the_standard_platform_matches_the_devices() {
    assert_eq!(u64::from(crate::acpi::LAPIC_ADDRESS), lapic::DEFAULT_BASE);
    // The tables fit in the BIOS area below 1 MiB.
    let ids: Vec<u8> = (0..255).collect();
    let l = layout(&AcpiConfig::standard(&ids), STANDARD_BASE).unwrap();
    assert!(STANDARD_BASE + l.len as u64 <= 0x10_0000);
    assert_eq!(STANDARD_BASE + STANDARD_REGION_LEN as u64, 0x10_0000);
    // The FADT's blocks are the PM device's window, and its timer width is the device's.
    let (mem, l) = standard();
    assert_eq!(mem.u32(l.fadt + 56), u32::from(acpi_pm::BASE_PORT));
    let window_end = u64::from(acpi_pm::BASE_PORT) + acpi_pm::WINDOW_LEN;
    assert!(mem.u32(l.fadt + 76) as u64 + 4 <= window_end);
    assert_eq!(mem.u32(l.fadt + 112) & (1 << 8) != 0, acpi_pm::TIMER_BITS == 32);
}

#[test]
fn a_guest_powering_off_as_linux_does_reaches_the_pm_device() {
    let (mem, l) = standard();
    // Linux: SLP_TYPa from \_S5_'s first element, PM1a_CNT from the FADT's X_ field.
    let slp_typ = u16::from(mem.u8(l.dsdt + 36 + 9));
    let cnt_port = mem.u64(l.fadt + 172 + 4);
    let offset = cnt_port - u64::from(acpi_pm::BASE_PORT);
    let mut pm = AcpiPm::new();
    let mut value = [0u8; 2];
    pm.read(offset, &mut value);
    let preserved = u16::from_le_bytes(value) & !(0b1111 << 10);
    pm.write(offset, &(preserved | slp_typ << 10).to_le_bytes());
    assert!(!pm.take_power_off());
    pm.write(offset, &(preserved | slp_typ << 10 | 1 << 13).to_le_bytes());
    assert!(pm.take_power_off());
    // The timer at the FADT's PM_TMR_BLK moves with the VM's time.
    let tmr = u64::from(mem.u32(l.fadt + 76)) - u64::from(acpi_pm::BASE_PORT);
    pm.set_time(1000);
    let mut t = [0u8; 4];
    pm.read(tmr, &mut t);
    assert_eq!(u32::from_le_bytes(t), 3000);
}

/// What a VM lacks is not advertised: no IOAPIC entry (and no overrides) without an
/// IOAPIC, the PIT's override only with a PIT, a moved IOAPIC at its address, no 8042 or
/// reset register without an i8042, the RTC declared absent; no tables at all without
/// the PM registers.
#[test]
fn the_tables_follow_the_vms_devices() {
    use protocols::devices::{Device, DeviceSet, Kind};
    let std = DeviceSet::STANDARD;
    assert_eq!(AcpiConfig::for_devices(&[0], &std), Some(AcpiConfig::standard(&[0])));
    assert_eq!(
        AcpiConfig::for_devices(&[0], &std.without(Kind::AcpiPm).without(Kind::Ioapic)),
        None
    );
    let kinds = |set: &DeviceSet| {
        let config = AcpiConfig::for_devices(&[0], set).unwrap();
        let (mem, l) = built(&config, STANDARD_BASE);
        let entries = madt_entries(mem.table(l.madt, b"APIC"));
        let fadt = (mem.u16(l.fadt + 109), mem.u32(l.fadt + 112) & (1 << 10));
        (entries, fadt)
    };
    let (entries, (boot_arch, reset)) =
        kinds(&std.without(Kind::Ioapic).without(Kind::I8042).without(Kind::CmosRtc));
    let types: Vec<u8> = entries.iter().map(|e| e.0).collect();
    assert_eq!(types, [0, 4], "a local APIC and its NMI, nothing else");
    assert_eq!(boot_arch, 0x1f & !0b10 | 0b10_0000, "no 8042, no CMOS RTC");
    assert_eq!(reset, 0, "no reset register");
    let list: Vec<Device> = std
        .listed()
        .filter(|d| d.kind != Kind::Pit8254)
        .map(|d| {
            if d.kind == Kind::Ioapic {
                Device { mmio: Some((0xfed0_0000, 0xfed0_0fff)), ..d }
            } else {
                d
            }
        })
        .collect();
    let (entries, _) = kinds(&DeviceSet::check(&list).unwrap());
    let ioapic: Vec<_> = entries.iter().filter(|e| e.0 == 1).map(|e| e.1.clone()).collect();
    assert_eq!(ioapic, [vec![0, 0, 0x00, 0x00, 0xd0, 0xfe, 0, 0, 0, 0]], "at 0xFED00000");
    let isos: Vec<_> = entries.iter().filter(|e| e.0 == 2).map(|e| e.1[1]).collect();
    assert_eq!(isos, [9], "the SCI's override alone: no PIT");
}
