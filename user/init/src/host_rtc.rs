//! The host's wall-clock date, read once from the CMOS real-time clock (ports 0x70/0x71,
//! which the root task holds), so a VM's RTC model can start at the host's time.

use crate::alloc::Alloc;
use protocols::bootinfo::slot;
use protocols::io::root_range_covering;
use protocols::object::Invocation;
use protocols::vmm::HostDate;
use rt::ipc::invoke;

const INDEX: u64 = 0x70;
const DATA: u64 = 0x71;
const REG_A: u64 = 0x0a;
const REG_B: u64 = 0x0b;
/// Register A: an update is in progress (the time registers are changing).
const UPDATE_IN_PROGRESS: u64 = 0x80;
/// Register B: binary rather than BCD values.
const BINARY: u64 = 0x04;
/// Register B: 24-hour rather than 12-hour hours.
const HOURS_24: u64 = 0x02;
/// Reads of register A an update may last (it takes under 2 ms).
const UPDATE_POLLS: u32 = 100_000;

/// The host's date and time as the CMOS clock says, or `None` if its ports are not
/// reachable or it never leaves an update.
pub fn read(a: &mut Alloc) -> Option<HostDate> {
    let range = root_range_covering(INDEX as u16, DATA as u16)?;
    let cap = a.slot();
    let root = slot::FIRST_IO_PORTS + range as u64;
    invoke(root, Invocation::IoPortsCarve, &[INDEX, DATA, cap]).ok()?;
    let reg = |r: u64| -> Option<u64> {
        invoke(cap, Invocation::IoPortOut, &[INDEX, 1, r]).ok()?;
        invoke(cap, Invocation::IoPortIn, &[DATA, 1]).ok()
    };
    let fields = || -> Option<[u64; 6]> {
        (0..UPDATE_POLLS).find(|_| reg(REG_A).is_some_and(|v| v & UPDATE_IN_PROGRESS == 0))?;
        Some([reg(9)?, reg(8)?, reg(7)?, reg(4)?, reg(2)?, reg(0)?])
    };
    // Two equal reads in a row cannot straddle an update.
    let mut last = fields()?;
    let now = loop {
        let again = fields()?;
        if again == last {
            break again;
        }
        last = again;
    };
    let b = reg(REG_B)?;
    let _ = invoke(slot::CNODE, Invocation::CNodeDelete, &[cap]);
    Some(decode(now, b))
}

/// Decode `[year, month, day, hour, minute, second]` as register B says they are stored.
fn decode([year, month, day, hour, minute, second]: [u64; 6], b: u64) -> HostDate {
    let value = |v: u64| if b & BINARY != 0 { v } else { (v >> 4) * 10 + (v & 0x0f) };
    // In 12-hour mode bit 7 marks PM and 12 o'clock is hour 0.
    let hour = if b & HOURS_24 != 0 {
        value(hour)
    } else {
        value(hour & 0x7f) % 12 + if hour & 0x80 != 0 { 12 } else { 0 }
    };
    HostDate {
        // The century register is not standard; a two-digit year is of this century.
        year: 2000 + value(year) as u16,
        month: value(month) as u8,
        day: value(day) as u8,
        hour: hour as u8,
        minute: value(minute) as u8,
        second: value(second) as u8,
        valid: 1,
    }
}
