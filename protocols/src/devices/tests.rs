use super::{Device, DeviceError, DeviceSet, Key, Kind, MAX_DEVICES};

fn d(kind: Kind) -> Device {
    Device::standard(kind)
}

fn standard_list() -> Vec<Device> {
    Kind::ALL.into_iter().map(d).collect()
}

#[test]
fn every_kind_at_its_place_is_the_standard_set() {
    assert_eq!(DeviceSet::check(&standard_list()), Ok(DeviceSet::STANDARD));
    let listed: Vec<Device> = DeviceSet::STANDARD.listed().collect();
    assert_eq!(DeviceSet::check(&listed), Ok(DeviceSet::STANDARD));
    assert_eq!(DeviceSet::STANDARD.uart(), Some((0x3f8, 4)));
    assert_eq!(DeviceSet::STANDARD.ioapic(), Some(0xfec0_0000));
    assert_eq!(DeviceSet::STANDARD.debug_exit(), Some(0xf4));
    for kind in Kind::ALL {
        assert_eq!(Kind::from_name(kind.name()), Some(kind));
        assert_eq!(Kind::from_raw(kind as u8), Some(kind));
    }
}

#[test]
fn the_uart_moves_to_com2_and_others_drop_out() {
    let mut list = vec![d(Kind::Pic8259), d(Kind::Lapic), d(Kind::Pit8254)];
    list.push(Device { ports: Some((0x2f8, 0x2ff)), irq: Some(3), ..d(Kind::Uart16550) });
    let set = DeviceSet::check(&list).unwrap();
    assert_eq!(set.uart(), Some((0x2f8, 3)));
    assert_eq!((set.ioapic(), set.debug_exit()), (None, None));
    assert!(set.has(Kind::Pit8254) && !set.has(Kind::I8042));
    // With the i8042 gone its lines are free.
    list[3].irq = Some(1);
    assert_eq!(DeviceSet::check(&list).map(|s| s.uart()), Ok(Some((0x2f8, 1))));
    // The I/O APIC moves inside the chipset's hole.
    let mut list = standard_list();
    list[2].mmio = Some((0xfed0_0000, 0xfed0_0fff));
    assert_eq!(DeviceSet::check(&list).map(|s| s.ioapic()), Ok(Some(0xfed0_0000)));
}

#[test]
fn each_rule_refuses_naming_the_device() {
    let refuse = |list: &[Device]| DeviceSet::check(list).unwrap_err();
    let mut list = standard_list();
    list.push(d(Kind::Uart16550));
    assert_eq!(refuse(&list), DeviceError::TooMany { count: MAX_DEVICES + 1 });
    list.truncate(MAX_DEVICES);
    list[9] = d(Kind::Uart16550);
    assert_eq!(refuse(&list), DeviceError::Twice { index: 9, kind: Kind::Uart16550 });
    let mut list = standard_list();
    list[3].ports = Some((0x40, 0x43));
    let e = refuse(&list);
    assert_eq!(e, DeviceError::Fixed { kind: Kind::Pit8254, key: Key::Ports });
    assert!(e.to_string().starts_with("device pit8254: sits at its PC place and takes no ports"));
    let uart = |ports, irq| {
        let mut list = standard_list();
        list[8] = Device { ports, irq, ..d(Kind::Uart16550) };
        DeviceSet::check(&list)
    };
    let e = uart(Some((0x2f8, 0x2fb)), None).unwrap_err();
    assert_eq!(e, DeviceError::BadPorts { kind: Kind::Uart16550, first: 0x2f8, last: 0x2fb });
    assert_eq!(
        e.to_string(),
        "device uart16550: ports 0x2f8..=0x2fb: it takes 8 ports from a multiple of 8"
    );
    assert!(uart(Some((0x2f9, 0x300)), None).is_err(), "unaligned");
    assert!(uart(Some((0xfff8, 0xffff)), None).is_ok(), "the top of the port space");
    assert_eq!(uart(None, Some(0)), Err(DeviceError::BadIrq { kind: Kind::Uart16550, irq: 0 }));
    assert_eq!(uart(None, Some(16)), Err(DeviceError::BadIrq { kind: Kind::Uart16550, irq: 16 }));
    let e = uart(Some((0x60, 0x67)), None).unwrap_err();
    assert_eq!(
        e,
        DeviceError::PortOverlap { kind: Kind::Uart16550, other: Kind::Pit8254, port: 0x61 }
    );
    assert_eq!(e.to_string(), "device uart16550: its ports overlap those of pit8254 (port 0x61)");
    // The later entry is the one named: here the debug-exit port, after the UART.
    let e = uart(Some((0xf0, 0xf7)), None).unwrap_err();
    assert_eq!(
        e,
        DeviceError::PortOverlap { kind: Kind::DebugExit, other: Kind::Uart16550, port: 0xf4 }
    );
    let e = uart(None, Some(8)).unwrap_err();
    assert_eq!(e, DeviceError::IrqConflict { kind: Kind::Uart16550, other: Kind::CmosRtc, irq: 8 });
    assert_eq!(
        uart(None, Some(2)).unwrap_err().to_string(),
        "device uart16550: irq 2 is pic8259's already"
    );
    // The debug-exit port moves, 4-aligned, and may not land on the UART.
    let mut list = standard_list();
    list[9].ports = Some((0x3fc, 0x3ff));
    assert_eq!(
        refuse(&list),
        DeviceError::PortOverlap { kind: Kind::DebugExit, other: Kind::Uart16550, port: 0x3fc }
    );
    list[9].ports = Some((0x502, 0x505));
    assert!(matches!(refuse(&list), DeviceError::BadPorts { kind: Kind::DebugExit, .. }));
    // The I/O APIC: one page in the hole, never on the local APIC's.
    let mut list = standard_list();
    for (first, last) in
        [(0xfec0_0000, 0xfec0_1fff), (0x4000_0000, 0x4000_0fff), (0xfec0_0800, 0xfec0_17ff)]
    {
        list[2].mmio = Some((first, last));
        assert_eq!(refuse(&list), DeviceError::BadMmio { kind: Kind::Ioapic, first, last });
    }
    list[2].mmio = Some((0xfee0_0000, 0xfee0_0fff));
    assert_eq!(
        refuse(&list),
        DeviceError::MmioOverlap { kind: Kind::Ioapic, other: Kind::Lapic, address: 0xfee0_0000 }
    );
    // The rules between kinds.
    let without =
        |kind: Kind| standard_list().into_iter().filter(|x| x.kind != kind).collect::<Vec<_>>();
    assert_eq!(refuse(&without(Kind::Lapic)), DeviceError::Missing { kind: Kind::Lapic });
    assert_eq!(refuse(&without(Kind::Pic8259)), DeviceError::Missing { kind: Kind::Pic8259 });
    let e = refuse(&without(Kind::AcpiPm));
    assert_eq!(e, DeviceError::Needs { kind: Kind::Ioapic, needs: Kind::AcpiPm });
    assert!(e.to_string().starts_with("device ioapic needs acpi_pm"), "{e}");
    assert!(DeviceSet::check(&without(Kind::Ioapic)).is_ok());
}
