//! The I/O APIC against the numbers of the 82093AA datasheet, through its MMIO window as
//! a guest reaches it.

use super::{
    offset, reg, DeliveryMode, Ioapic, Message, ACTIVE_LOW, DELIVERY_STATUS, DEST_LOGICAL, LEVEL,
    MASKED, PINS, REMOTE_IRR, VERSION, WRITABLE,
};
use crate::bus::BusDevice;
use crate::devices::lapic::Trigger;

fn rd(io: &mut Ioapic, index: u8) -> u32 {
    io.write(offset::IOREGSEL, &u32::from(index).to_le_bytes());
    let mut b = [0u8; 4];
    io.read(offset::IOWIN, &mut b);
    u32::from_le_bytes(b)
}

fn wr(io: &mut Ioapic, index: u8, value: u32) {
    io.write(offset::IOREGSEL, &u32::from(index).to_le_bytes());
    io.write(offset::IOWIN, &value.to_le_bytes());
}

fn low(pin: u8) -> u8 {
    reg::REDIRECTION + 2 * pin
}

fn high(pin: u8) -> u8 {
    low(pin) + 1
}

/// Program `pin`'s low half with `bits` (vector and flags) and destination `dest`.
fn program(io: &mut Ioapic, pin: u8, dest: u8, bits: u32) {
    wr(io, high(pin), u32::from(dest) << 24);
    wr(io, low(pin), bits);
}

fn messages(io: &mut Ioapic) -> usize {
    core::iter::from_fn(|| io.take_message()).count()
}

const EDGE: u32 = 0;
const LEVEL32: u32 = LEVEL as u32;
const MASKED32: u32 = MASKED as u32;
const ACTIVE_LOW32: u32 = ACTIVE_LOW as u32;

#[test]
fn reset_state_matches_the_datasheet() {
    let mut io = Ioapic::new();
    assert_eq!(rd(&mut io, reg::VERSION), 0x0017_0011);
    assert_eq!(VERSION, 0x0017_0011);
    assert_eq!(rd(&mut io, reg::ID), 0);
    assert_eq!(rd(&mut io, reg::ARBITRATION), 0);
    for pin in 0..PINS as u8 {
        assert_eq!(rd(&mut io, low(pin)), 0x0001_0000, "pin {pin}");
        assert_eq!(rd(&mut io, high(pin)), 0, "pin {pin}");
        assert_eq!(io.entry(pin), Some(0x1_0000));
    }
    assert_eq!(io.entry(PINS as u8), None);
    assert!(!io.has_message());
}

#[test]
fn id_keeps_bits_27_to_24_and_arbitration_follows() {
    let mut io = Ioapic::new();
    wr(&mut io, reg::ID, 0xffff_ffff);
    assert_eq!(rd(&mut io, reg::ID), 0x0f00_0000);
    assert_eq!(io.id(), 0xf);
    assert_eq!(rd(&mut io, reg::ARBITRATION), 0x0f00_0000);
    wr(&mut io, reg::ID, 0x0200_0000);
    assert_eq!(io.id(), 2);
    // Version and arbitration are read-only.
    wr(&mut io, reg::VERSION, 0);
    wr(&mut io, reg::ARBITRATION, 0x0500_0000);
    assert_eq!(rd(&mut io, reg::VERSION), VERSION);
    assert_eq!(rd(&mut io, reg::ARBITRATION), 0x0200_0000);
}

#[test]
fn entry_halves_are_independent_and_reserved_bits_read_zero() {
    let mut io = Ioapic::new();
    wr(&mut io, high(5), 0xffff_ffff);
    assert_eq!(rd(&mut io, high(5)), 0xff00_0000);
    assert_eq!(rd(&mut io, low(5)), 0x0001_0000);
    wr(&mut io, low(5), 0xffff_ffff);
    // Everything but delivery status, remote IRR and bits 31:17.
    assert_eq!(rd(&mut io, low(5)), 0x0001_afff);
    assert_eq!(io.entry(5), Some(WRITABLE));
    assert_eq!(rd(&mut io, high(5)), 0xff00_0000);
}

#[test]
fn writes_leave_read_only_bits_alone() {
    let mut io = Ioapic::new();
    program(&mut io, 3, 0, LEVEL32 | 0x40);
    io.set_irq(3, true);
    assert_eq!(rd(&mut io, low(3)) & REMOTE_IRR as u32, REMOTE_IRR as u32);
    // Clearing bits 12 and 14 by write changes nothing; the masked, level entry stays.
    wr(&mut io, low(3), LEVEL32 | MASKED32 | 0x40);
    assert_eq!(rd(&mut io, low(3)), LEVEL32 | MASKED32 | REMOTE_IRR as u32 | 0x40);
    // Setting delivery status by write changes nothing either.
    let mut fresh = Ioapic::new();
    wr(&mut fresh, low(0), DELIVERY_STATUS as u32 | REMOTE_IRR as u32 | 0x41);
    assert_eq!(rd(&mut fresh, low(0)), 0x41);
}

#[test]
fn edge_fires_once_per_rising_edge() {
    let mut io = Ioapic::new();
    program(&mut io, 4, 0x03, EDGE | 0x30);
    io.set_irq(4, true);
    assert!(io.has_message());
    assert_eq!(
        io.take_message(),
        Some(Message {
            pin: 4,
            vector: 0x30,
            delivery: DeliveryMode::Fixed,
            trigger: Trigger::Edge,
            logical: false,
            destination: 0x03,
        })
    );
    assert!(!io.has_message());
    io.set_irq(4, true);
    assert_eq!(io.take_message(), None);
    io.set_irq(4, false);
    assert_eq!(io.take_message(), None);
    io.set_irq(4, true);
    assert_eq!(messages(&mut io), 1);
    // Edges never set remote IRR; an EOI of the vector changes nothing.
    assert_eq!(rd(&mut io, low(4)) & REMOTE_IRR as u32, 0);
    io.eoi(0x30);
    assert_eq!(messages(&mut io), 0);
}

#[test]
fn edge_while_masked_is_lost() {
    let mut io = Ioapic::new();
    program(&mut io, 2, 0, MASKED32 | 0x31);
    io.set_irq(2, true);
    assert!(!io.has_message());
    // Unmasking a line that is already high sends nothing: the edge was before.
    wr(&mut io, low(2), 0x31);
    assert!(!io.has_message());
    io.set_irq(2, false);
    io.set_irq(2, true);
    assert_eq!(messages(&mut io), 1);
}

#[test]
fn edges_before_a_take_coalesce_and_lower_pins_come_first() {
    let mut io = Ioapic::new();
    program(&mut io, 9, 0, 0x39);
    program(&mut io, 1, 0, 0x21);
    for _ in 0..3 {
        io.set_irq(9, true);
        io.set_irq(9, false);
    }
    io.set_irq(1, true);
    assert_eq!(io.take_message().map(|m| m.pin), Some(1));
    assert_eq!(io.take_message().map(|m| (m.pin, m.vector)), Some((9, 0x39)));
    assert_eq!(io.take_message(), None);
}

#[test]
fn a_message_is_built_from_the_entry_when_taken() {
    let mut io = Ioapic::new();
    program(&mut io, 6, 0, 0x50);
    io.set_irq(6, true);
    wr(&mut io, low(6), 0x51);
    assert_eq!(io.take_message().map(|m| m.vector), Some(0x51));
}

#[test]
fn active_low_inverts_the_wire() {
    let mut io = Ioapic::new();
    // The wire idles high; falling is the input's rising edge.
    io.set_irq(7, true);
    program(&mut io, 7, 0, ACTIVE_LOW32 | 0x37);
    assert!(!io.has_message());
    io.set_irq(7, false);
    assert_eq!(messages(&mut io), 1);
    io.set_irq(7, true);
    assert_eq!(messages(&mut io), 0);

    // A level entry with a low wire is asserted as soon as it is unmasked.
    let mut io = Ioapic::new();
    program(&mut io, 11, 0, ACTIVE_LOW32 | LEVEL32 | 0x3b);
    let m = io.take_message().unwrap();
    assert_eq!((m.pin, m.vector, m.trigger), (11, 0x3b, Trigger::Level));
    io.eoi(0x3b);
    assert_eq!(messages(&mut io), 1, "still asserted after the EOI");
    io.set_irq(11, true);
    io.eoi(0x3b);
    assert_eq!(messages(&mut io), 0);
    assert_eq!(rd(&mut io, low(11)) & REMOTE_IRR as u32, 0);
}

#[test]
fn level_sets_remote_irr_and_waits_for_the_eoi() {
    let mut io = Ioapic::new();
    program(&mut io, 10, 0, LEVEL32 | 0x3a);
    io.set_irq(10, true);
    assert_eq!(io.take_message().map(|m| m.trigger), Some(Trigger::Level));
    assert_ne!(rd(&mut io, low(10)) & REMOTE_IRR as u32, 0);
    // Still asserted, re-driven, or pulsed: remote IRR holds it back.
    io.set_irq(10, true);
    io.set_irq(10, false);
    io.set_irq(10, true);
    assert_eq!(messages(&mut io), 0);
    // The EOI with the line still asserted sends again.
    io.eoi(0x3a);
    assert_eq!(messages(&mut io), 1);
    assert_ne!(rd(&mut io, low(10)) & REMOTE_IRR as u32, 0);
    // Deasserted before the EOI: remote IRR clears and nothing is sent.
    io.set_irq(10, false);
    io.eoi(0x3a);
    assert_eq!(messages(&mut io), 0);
    assert_eq!(rd(&mut io, low(10)) & REMOTE_IRR as u32, 0);
    io.set_irq(10, true);
    assert_eq!(messages(&mut io), 1);
}

#[test]
fn eoi_of_another_vector_does_nothing() {
    let mut io = Ioapic::new();
    program(&mut io, 10, 0, LEVEL32 | 0x3a);
    io.set_irq(10, true);
    assert_eq!(messages(&mut io), 1);
    io.eoi(0x3b);
    io.eoi(0x2a);
    assert_eq!(messages(&mut io), 0);
    assert_ne!(rd(&mut io, low(10)) & REMOTE_IRR as u32, 0);
}

#[test]
fn eoi_reaches_every_level_entry_with_the_vector() {
    let mut io = Ioapic::new();
    program(&mut io, 16, 0, LEVEL32 | 0x60);
    program(&mut io, 17, 0, LEVEL32 | 0x60);
    io.set_irq(16, true);
    io.set_irq(17, true);
    assert_eq!(messages(&mut io), 2);
    io.eoi(0x60);
    assert_eq!(messages(&mut io), 2);
}

#[test]
fn unmasking_an_asserted_level_line_fires() {
    let mut io = Ioapic::new();
    program(&mut io, 12, 0, LEVEL32 | MASKED32 | 0x3c);
    io.set_irq(12, true);
    assert!(!io.has_message());
    assert_eq!(rd(&mut io, low(12)) & REMOTE_IRR as u32, 0);
    wr(&mut io, low(12), LEVEL32 | 0x3c);
    assert_eq!(messages(&mut io), 1);
    assert_ne!(rd(&mut io, low(12)) & REMOTE_IRR as u32, 0);
    // Rewriting the high half does not send again while remote IRR is set.
    wr(&mut io, high(12), 0x0100_0000);
    assert_eq!(messages(&mut io), 0);
}

#[test]
fn switching_an_asserted_line_to_level_or_active_high_fires() {
    let mut io = Ioapic::new();
    program(&mut io, 13, 0, 0x3d);
    io.set_irq(13, true);
    assert_eq!(messages(&mut io), 1);
    wr(&mut io, low(13), LEVEL32 | 0x3d);
    assert_eq!(messages(&mut io), 1, "edge to level with the input asserted");

    let mut io = Ioapic::new();
    program(&mut io, 14, 0, LEVEL32 | ACTIVE_LOW32 | MASKED32 | 0x3e);
    io.set_irq(14, true);
    wr(&mut io, low(14), LEVEL32 | ACTIVE_LOW32 | 0x3e);
    assert_eq!(messages(&mut io), 0, "high wire, active low: deasserted");
    wr(&mut io, low(14), LEVEL32 | 0x3e);
    assert_eq!(messages(&mut io), 1, "the same wire, active high: asserted");
}

#[test]
fn level_to_edge_clears_remote_irr() {
    let mut io = Ioapic::new();
    program(&mut io, 15, 0, LEVEL32 | 0x3f);
    io.set_irq(15, true);
    assert_eq!(messages(&mut io), 1);
    assert_ne!(rd(&mut io, low(15)) & REMOTE_IRR as u32, 0);
    wr(&mut io, low(15), 0x3f);
    assert_eq!(rd(&mut io, low(15)), 0x3f);
    assert_eq!(messages(&mut io), 0);
    // And back to level with the line still high: it fires at once.
    wr(&mut io, low(15), LEVEL32 | 0x3f);
    assert_eq!(messages(&mut io), 1);
}

#[test]
fn message_fields_come_from_the_entry() {
    let mut io = Ioapic::new();
    program(&mut io, 20, 0xa5, DEST_LOGICAL as u32 | 1 << 8 | 0x71);
    io.set_irq(20, true);
    assert_eq!(
        io.take_message(),
        Some(Message {
            pin: 20,
            vector: 0x71,
            delivery: DeliveryMode::LowestPriority,
            trigger: Trigger::Edge,
            logical: true,
            destination: 0xa5,
        })
    );
    let modes = [
        DeliveryMode::Fixed,
        DeliveryMode::LowestPriority,
        DeliveryMode::Smi,
        DeliveryMode::Reserved(3),
        DeliveryMode::Nmi,
        DeliveryMode::Init,
        DeliveryMode::Reserved(6),
        DeliveryMode::ExtInt,
    ];
    for (bits, mode) in (0u8..).zip(modes) {
        assert_eq!(DeliveryMode::from_bits(bits), mode);
        assert_eq!(mode.bits(), bits);
        let mut io = Ioapic::new();
        program(&mut io, 0, 0, u32::from(bits) << 8);
        io.set_irq(0, true);
        assert_eq!(io.take_message().map(|m| m.delivery), Some(mode));
    }
}

#[test]
fn pins_out_of_range_are_ignored() {
    let mut io = Ioapic::new();
    for pin in [24, 31, 32, 255] {
        io.set_irq(pin, true);
        assert_eq!(io.entry(pin), None);
    }
    assert!(!io.has_message());
    io.eoi(0);
    // Registers past entry 23 read all ones and drop writes, as do the gap 0x03-0x0f.
    for index in [0x03, 0x0f, 0x40, 0x41, 0xff] {
        wr(&mut io, index, 0);
        assert_eq!(rd(&mut io, index), u32::MAX, "register {index:#x}");
    }
}

#[test]
fn ioregsel_is_eight_bits_and_odd_widths_see_register_bytes() {
    let mut io = Ioapic::new();
    io.write(offset::IOREGSEL, &[reg::VERSION, 0xaa, 0xbb, 0xcc]);
    let mut sel = [0u8; 4];
    io.read(offset::IOREGSEL, &mut sel);
    assert_eq!(sel, [reg::VERSION, 0, 0, 0]);
    // Bytes 1-3 of IOREGSEL are reserved: a write there leaves the selection.
    io.write(offset::IOREGSEL + 1, &[0x10]);
    let mut b = [0u8; 1];
    io.read(offset::IOWIN + 2, &mut b);
    assert_eq!(b, [0x17]);
    let mut w = [0u8; 2];
    io.read(offset::IOWIN, &mut w);
    assert_eq!(w, [0x11, 0x00]);
    // An 8-byte read covers IOWIN and four undecoded bytes.
    let mut q = [0u8; 8];
    io.read(offset::IOWIN, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0xffff_ffff_0017_0011);
    // A 1-byte IOREGSEL write and a 1-byte IOWIN write merge into the entry.
    io.write(offset::IOREGSEL, &[low(8)]);
    io.write(offset::IOWIN, &[0x48]);
    assert_eq!(io.entry(8), Some(MASKED | 0x48));
    io.write(offset::IOWIN + 2, &[0x00]);
    assert_eq!(io.entry(8), Some(0x48), "byte 2 holds the mask bit");
    // Bytes outside the two registers read all ones.
    io.read(0x04, &mut b);
    assert_eq!(b, [0xff]);
    io.read(0x20, &mut b);
    assert_eq!(b, [0xff]);
}

#[test]
fn no_offset_or_width_panics() {
    let mut io = Ioapic::new();
    program(&mut io, 0, 0, LEVEL32 | 0x30);
    io.set_irq(0, true);
    for width in [1usize, 2, 4, 8] {
        for off in 0..0x20u64 {
            for value in [0u8, 0x5a, 0xff] {
                let data = [value; 8];
                io.write(off, &data[..width]);
                let mut out = [0u8; 8];
                io.read(off, &mut out[..width]);
                while io.take_message().is_some() {}
                io.eoi(value);
            }
        }
    }
    for off in [0x40, 0xfff, 0x1000, u64::MAX - 3, u64::MAX] {
        let mut out = [0u8; 8];
        io.read(off, &mut out);
        assert_eq!(out, [0xff; 8]);
        io.write(off, &[0; 8]);
    }
    let mut long = [0u8; 0x30];
    io.read(0, &mut long);
    // One access spanning both: IOREGSEL selects entry 0's high half, then IOWIN writes it.
    io.write(0, &[0x11; 0x30]);
    assert_eq!(io.entry(0).map(|e| e >> 56), Some(0x11));
}
