//! The ACPI tables as another reader sees them: the `acpi` crate (rust-osdev) finds the
//! RSDP by the BIOS-area scan an OS does, then the FADT, the DSDT, the FACS and the
//! MADT's processor, IOAPIC and overrides. An integration test because the crate's
//! memory-mapping handler is an `unsafe` trait, which the library forbids.

use std::ptr::NonNull;

use acpi::address::{AccessSize, AddressSpace, GenericAddress};
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use vmm_server::acpi::{build, AcpiConfig, AcpiLayout, STANDARD_BASE, STANDARD_REGION_LEN};

/// Guest-physical memory from 0 past 1 MiB, so that the BDA and the BIOS area exist.
const MEMORY: usize = 0x10_1000;

/// Physical memory as a leaked buffer, identity-"mapped" to its own addresses.
#[derive(Clone, Copy)]
struct Memory(&'static [u8]);

impl AcpiHandler for Memory {
    unsafe fn map_physical_region<T>(
        &self,
        address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let end = address.checked_add(size).expect("mapping wraps");
        assert!(end <= self.0.len(), "mapping {address:#x}+{size:#x} outside memory");
        let start = NonNull::from(&self.0[address]).cast::<T>();
        // SAFETY: `start..start + size` lies inside the leaked buffer, which lives for the
        // rest of the test and is only read through the mapping.
        unsafe { PhysicalMapping::new(address, start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Memory with the standard tables for `apic_ids` at the BIOS area.
fn memory(apic_ids: &[u8]) -> (Memory, AcpiLayout) {
    // u64s so that the buffer is aligned as physical memory is.
    let words: &'static mut [u64] = Vec::leak(vec![0u64; MEMORY / 8]);
    let bytes: &'static mut [u8] = bytemuck::cast_slice_mut(words);
    let base = STANDARD_BASE as usize;
    let region = &mut bytes[base..base + STANDARD_REGION_LEN];
    let layout = build(&AcpiConfig::standard(apic_ids), STANDARD_BASE, region)
        .expect("the standard tables build");
    (Memory(bytes), layout)
}

fn io(port: u64, bit_width: u8, access_size: AccessSize) -> GenericAddress {
    GenericAddress {
        address_space: AddressSpace::SystemIo,
        bit_width,
        bit_offset: 0,
        access_size,
        address: port,
    }
}

#[test]
fn the_acpi_crate_finds_the_rsdp_and_reads_the_fadt() {
    let (mem, layout) = memory(&[0]);
    // SAFETY: `mem` is a BIOS machine's memory: the BDA and the BIOS area are mapped.
    let tables = unsafe { AcpiTables::search_for_rsdp_bios(mem) }.unwrap();
    assert_eq!(tables.revision(), 2);
    let fadt = tables.find_table::<Fadt>().unwrap();
    fadt.validate().unwrap();
    assert_eq!(fadt.physical_start() as u64, layout.fadt);
    let flags = { fadt.flags };
    assert!(!flags.system_is_hw_reduced_acpi());
    assert!(flags.pm_timer_is_32_bit());
    assert!(flags.supports_system_reset_via_fadt());
    assert!(flags.power_button_is_control_method() && flags.sleep_button_is_control_method());
    let arch = { fadt.iapc_boot_arch };
    assert!(arch.legacy_devices_are_accessible() && arch.motherboard_implements_8042());
    assert!(arch.dont_probe_vga() && arch.dont_enable_msi() && arch.dont_enable_pcie_aspm());
    assert_eq!({ fadt.century }, 0x32);
    assert_eq!({ fadt.sci_interrupt }, 9);
    assert_eq!({ fadt.smi_cmd_port }, 0);
    assert_eq!(fadt.pm1a_event_block().unwrap(), io(0x600, 32, AccessSize::WordAccess));
    assert_eq!(fadt.pm1a_control_block().unwrap(), io(0x604, 16, AccessSize::WordAccess));
    assert_eq!(fadt.pm_timer_block().unwrap(), Some(io(0x608, 32, AccessSize::DWordAccess)));
    assert_eq!(fadt.pm1b_event_block().unwrap(), None);
    assert_eq!(fadt.gpe0_block().unwrap(), None);
    assert_eq!(fadt.reset_register().unwrap(), io(0x64, 8, AccessSize::ByteAccess));
    assert_eq!({ fadt.reset_value }, 0xfe);
    assert_eq!(fadt.facs_address().unwrap() as u64, layout.facs);
    assert_eq!(fadt.dsdt_address().unwrap() as u64, layout.dsdt);
    let dsdt = tables.dsdt().unwrap();
    assert_eq!((dsdt.address as u64, dsdt.length), (layout.dsdt + 36, 14));
}

#[test]
fn the_acpi_crate_reads_the_processor_the_ioapic_and_the_overrides() {
    let (mem, _) = memory(&[0]);
    // SAFETY: as above.
    let tables = unsafe { AcpiTables::search_for_rsdp_bios(mem) }.unwrap();
    let madt = tables.find_table::<Madt>().unwrap();
    let madt = madt.get();
    assert_eq!({ madt.local_apic_address }, 0xfee0_0000);
    assert!(madt.supports_8259());
    let mut processors = Vec::new();
    let mut ioapics = Vec::new();
    let mut overrides = Vec::new();
    let mut nmis = Vec::new();
    for entry in madt.entries() {
        match entry {
            MadtEntry::LocalApic(e) => processors.push((e.processor_id, e.apic_id, { e.flags })),
            MadtEntry::IoApic(e) => ioapics
                .push((e.io_apic_id, { e.io_apic_address }, { e.global_system_interrupt_base })),
            MadtEntry::InterruptSourceOverride(e) => {
                overrides.push((e.bus, e.irq, { e.global_system_interrupt }, { e.flags }))
            }
            MadtEntry::LocalApicNmi(e) => nmis.push((e.processor_id, { e.flags }, e.nmi_line)),
            other => panic!("unexpected MADT entry {other:?}"),
        }
    }
    assert_eq!(processors, [(0, 0, 1)], "one enabled processor, UID 0, APIC ID 0");
    assert_eq!(ioapics, [(0, 0xfec0_0000, 0)]);
    assert_eq!(overrides, [(0, 0, 2, 0x0000), (0, 9, 9, 0x000d)]);
    assert_eq!(nmis, [(0xff, 0, 1)]);
}

#[test]
fn the_acpi_crate_sees_every_cpu_and_table() {
    let (mem, layout) = memory(&[0, 1, 2, 3]);
    // SAFETY: as above.
    let tables = unsafe { AcpiTables::search_for_rsdp_bios(mem) }.unwrap();
    let signatures: Vec<String> =
        tables.headers().map(|h| h.signature.as_str().to_owned()).collect();
    assert_eq!(signatures, ["FACP", "APIC"]);
    let madt = tables.find_table::<Madt>().unwrap();
    assert_eq!(madt.physical_start() as u64, layout.madt);
    let cpus = madt.get().entries().filter(|e| matches!(e, MadtEntry::LocalApic(_))).count();
    assert_eq!(cpus, 4);
}
