//! Fuzzes `kernel::acpi::Platform::read`, the kernel's reader of the firmware's ACPI
//! tables (RSDP, RSDT/XSDT, MADT, FADT).
//!
//! Input: a mode byte (see `fuzz::acpi_mode`), then either raw physical memory from
//! address 0 whose first 36 bytes are also the RSDP copy the boot loader would pass, or
//! an `arbitrary` machine whose tables the VMM's own ACPI writer lays out, then byte
//! mutations of those tables.
//! Invariants: reading never panics; at most `MAX_CPUS` CPUs come back and the others are
//! counted; an unmutated machine reads back exactly as it was written (the CPUs in
//! order with their UIDs, the I/O APIC, every override with its flags, PCAT_COMPAT, the
//! PM timer's port and width); and whatever the bytes, CPUs are left off only past
//! `MAX_CPUS`, and no more are counted than 8-byte entries fit in memory.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use fuzz::acpi_mode::BUILT;
use kernel::acpi::{Cpu, IoApic, Override, Platform, PmTimer, MAX_CPUS};
use libfuzzer_sys::fuzz_target;
use vmm_server::acpi::{
    build, AcpiConfig, InterruptOverride, PmPorts, Polarity, ResetRegister, Trigger,
};

/// Where the built tables start, and the memory after them.
const BASE: usize = 0x1000;
const MEMORY: usize = BASE + 0x4000;

#[derive(Arbitrary, Debug)]
struct Machine {
    apic_ids: Vec<u8>,
    ioapic: Option<(u8, u32, u32)>,
    overrides: Vec<(u8, u32, bool, bool)>,
    pm_tmr: u16,
    timer_32_bits: bool,
    mutations: Vec<(u16, u8)>,
}

fn polarity(low: bool) -> Polarity {
    if low {
        Polarity::ActiveLow
    } else {
        Polarity::ActiveHigh
    }
}

fn trigger(level: bool) -> Trigger {
    if level {
        Trigger::Level
    } else {
        Trigger::Edge
    }
}

fn read(memory: &[u8], rsdp: &[u8]) -> Option<Platform> {
    let phys = |at: u64, len: usize| {
        let at = usize::try_from(at).ok()?;
        memory.get(at..at.checked_add(len)?)
    };
    let platform = Platform::read(Some(rsdp), &phys).ok()?;
    assert!(platform.cpus.len() <= MAX_CPUS);
    assert!(platform.cpus_ignored == 0 || platform.cpus.len() == MAX_CPUS, "CPUs left off early");
    // Every CPU takes an entry of at least 8 bytes of memory.
    let cpus = platform.cpus.len() + platform.cpus_ignored;
    assert!(cpus <= memory.len() / 8, "{cpus} CPUs from {} bytes", memory.len());
    Some(platform)
}

fn built(data: &[u8]) {
    let Ok(m) = Machine::arbitrary(&mut Unstructured::new(data)) else { return };
    let overrides: Vec<InterruptOverride> = m
        .overrides
        .iter()
        .map(|&(isa_irq, gsi, low, level)| InterruptOverride {
            isa_irq,
            gsi,
            polarity: polarity(low),
            trigger: trigger(level),
        })
        .collect();
    let ioapic = m.ioapic.map(|(id, address, gsi_base)| vmm_server::acpi::IoApic {
        id,
        address,
        gsi_base,
    });
    let config = AcpiConfig {
        apic_ids: &m.apic_ids,
        lapic_address: 0xfee0_0000,
        ioapic,
        overrides: &overrides,
        sci_irq: 9,
        pm: PmPorts { pm_tmr: m.pm_tmr, ..PmPorts::STANDARD },
        reset: Some(ResetRegister::I8042),
        boot_arch: 0,
    };
    let mut memory = vec![0u8; MEMORY];
    let Ok(layout) = build(&config, BASE as u64, &mut memory[BASE..]) else { return };
    if !m.timer_32_bits {
        // FLAGS bits 15:8 hold TMR_VAL_EXT; clear it and keep the checksum right.
        let fadt = layout.fadt as usize;
        let flags = fadt + 113;
        let old = memory[flags];
        memory[flags] = old & !1;
        memory[fadt + 9] = memory[fadt + 9].wrapping_add(old & 1);
    }
    let tables = BASE..BASE + layout.len;
    for &(at, xor) in &m.mutations {
        memory[tables.start + usize::from(at) % tables.len()] ^= xor;
    }
    let rsdp = memory[BASE..BASE + 36].to_vec();
    let got = read(&memory, &rsdp);
    if !m.mutations.is_empty() {
        return;
    }
    let p = got.expect("the VMM's unspoiled tables are refused");
    let cpus: Vec<Cpu> =
        m.apic_ids.iter().zip(0..).map(|(&id, uid)| Cpu { apic_id: id.into(), uid }).collect();
    let kept = cpus.len().min(MAX_CPUS);
    assert_eq!(p.cpus.as_slice(), &cpus[..kept]);
    assert_eq!(p.cpus_ignored, cpus.len() - kept);
    let io: Vec<IoApic> = ioapic
        .iter()
        .map(|i| IoApic { id: i.id, address: i.address, gsi_base: i.gsi_base })
        .collect();
    assert_eq!(p.io_apics.as_slice(), io.as_slice());
    let want: Vec<Override> =
        overrides.iter().map(|o| Override { irq: o.isa_irq, gsi: o.gsi, flags: o.flags() }).collect();
    assert_eq!(p.overrides.as_slice(), want.as_slice());
    assert!(p.legacy_pics);
    let bits = if m.timer_32_bits { 32 } else { 24 };
    let timer = (m.pm_tmr != 0).then_some(PmTimer { port: m.pm_tmr, bits });
    assert_eq!(p.pm_timer, timer);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode == BUILT {
        built(rest);
    } else if let Some(rsdp) = rest.get(..36) {
        read(rest, rsdp);
    }
});
