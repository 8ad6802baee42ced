//! Ordinary processes in the manifest: each is a boot module the root task loads into an
//! address space of its own and starts with exactly the capabilities its entry lists, in
//! the slots the entry names. Slot 0 stays empty; slots 1 and 2 always hold the process's
//! own CNode and VSpace.
//!
//! Endpoints and notifications that several parties share are declared once by name
//! ([`Object`]): the root task makes them before any process, keeps the originals, and
//! hands out copies ([`Cap::Named`]), so it can reach them itself (it prints through the
//! console driver's endpoint and hears the fuzzer's report on another).

use crate::io::{root_range_covering, IRQ_CASCADE, IRQ_LINES, IRQ_TIMER};
use crate::rights::Rights;
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// The most processes a manifest lists.
pub const MAX_PROCESSES: usize = 8;
/// The most capabilities one process is given (besides its CNode and VSpace).
pub const MAX_CAPS: usize = 16;
/// The most named objects a manifest declares.
pub const MAX_OBJECTS: usize = 16;
/// The smallest CNode a process gets: slots 0..=2 are taken, so 2^2 leaves one.
pub const MIN_RADIX: u8 = 2;
/// The largest CNode a process gets (the root task's own size).
pub const MAX_RADIX: u8 = crate::bootinfo::ROOT_CNODE_RADIX;
/// The smallest untyped capability: one page.
pub const MIN_UNTYPED_BITS: u8 = 12;
/// The largest untyped capability: 256 MiB, as much as a VM gets.
pub const MAX_UNTYPED_BITS: u8 = 28;
/// The rights a copy of a named endpoint or notification may carry, by the names the
/// manifest's TOML uses.
pub const RIGHT_NAMES: [(&str, Rights); 4] = [
    ("read", Rights::READ),
    ("write", Rights::WRITE),
    ("grant", Rights::GRANT),
    ("call", Rights::CALL),
];
/// Every right in [`RIGHT_NAMES`].
pub const OBJECT_RIGHTS: Rights =
    Rights::READ.union(Rights::WRITE).union(Rights::GRANT).union(Rights::CALL);

/// Rights bits shown by their names (`read+call`), or as bits if some have no name.
struct RightsNames(u8);

impl core::fmt::Display for RightsNames {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == 0 || self.0 & !OBJECT_RIGHTS.bits() != 0 {
            return write!(f, "{:#07b}", self.0);
        }
        let mut sep = "";
        for (name, right) in RIGHT_NAMES {
            if self.0 & right.bits() != 0 {
                write!(f, "{sep}{name}")?;
                sep = "+";
            }
        }
        Ok(())
    }
}

/// Slots every process's CNode has filled by the root task.
pub mod slot {
    /// Never a capability (a null slot reference).
    pub const NULL: u64 = 0;
    /// The process's own CNode.
    pub const CNODE: u64 = 1;
    /// The process's own address space.
    pub const VSPACE: u64 = 2;
    /// The first slot an entry's capabilities may use.
    pub const FIRST_LISTED: u64 = 3;
}

/// What a named object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectKind {
    /// An IPC endpoint.
    Endpoint,
    /// A notification.
    Notification,
}

/// An endpoint or notification the root task makes before the processes and keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object<'a> {
    /// Its name, which capabilities and fault handlers refer to.
    pub name: &'a str,
    /// What it is.
    pub kind: ObjectKind,
}

/// When the root task lets a process run (it creates every process at boot, in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Start {
    /// As soon as it is created.
    Boot,
    /// Once every VM has ended (the in-image fuzzer, so it does not disturb them).
    AfterVms,
}

/// What goes into one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cap<'a> {
    /// A fresh endpoint of the process's own, with every right (the root task keeps none).
    Endpoint,
    /// A fresh notification of the process's own, with every right.
    Notification,
    /// A copy of the named object with `rights` (`rights::Rights` bits), minted with
    /// `badge` unless it is 0.
    Named {
        /// The [`Object`]'s name.
        name: &'a str,
        /// Its rights; a subset of [`OBJECT_RIGHTS`], never none.
        rights: u8,
        /// Its badge; 0 for none.
        badge: u64,
    },
    /// Fresh untyped memory of 2^`bits` bytes.
    Untyped {
        /// log2 of its size.
        bits: u8,
    },
    /// `IoPorts` for `first..=last`, carved from the root task's range.
    IoPorts {
        /// The first port.
        first: u16,
        /// The last port.
        last: u16,
    },
    /// The `IrqHandler` of one line.
    Irq {
        /// The line (never the kernel's 0 and 2).
        line: u8,
    },
    /// The process's own TCB, with every right.
    OwnTcb,
}

impl core::fmt::Display for Cap<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Endpoint => write!(f, "a fresh endpoint"),
            Self::Notification => write!(f, "a fresh notification"),
            Self::Named { name, rights, badge } => {
                write!(f, "{name:?} ({}", RightsNames(rights))?;
                if badge != 0 {
                    write!(f, ", badge {badge:#x}")?;
                }
                write!(f, ")")
            }
            Self::Untyped { bits } => write!(f, "untyped 2^{bits}"),
            Self::IoPorts { first, last } => write!(f, "io ports {first:#x}..={last:#x}"),
            Self::Irq { line } => write!(f, "irq {line}"),
            Self::OwnTcb => write!(f, "its own tcb"),
        }
    }
}

/// One capability of a process: its slot and what goes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapEntry<'a> {
    /// The slot in the process's CNode (at least [`slot::FIRST_LISTED`], below
    /// 2^`cnode_radix`).
    pub slot: u16,
    /// What goes there.
    #[serde(borrow)]
    pub cap: Cap<'a>,
}

/// One process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry<'a> {
    /// Its name (its test line is `<name>_started`).
    pub name: &'a str,
    /// Its program's boot module.
    pub module: &'a str,
    /// Its scheduling priority (at most the root task's, 255).
    pub priority: u8,
    /// log2 of its CNode's slot count.
    pub cnode_radix: u8,
    /// Its start register, `rdi`.
    pub arg: u64,
    /// The named endpoint its faults go to; without one a fault stops it.
    pub fault: Option<&'a str>,
    /// When it runs.
    pub start: Start,
    /// Its capabilities, made and given in this order.
    #[serde(borrow)]
    pub caps: Vec<CapEntry<'a>, MAX_CAPS>,
}

impl<'a> ProcessEntry<'a> {
    /// What its slot `slot` holds, if the entry lists it.
    pub fn cap(&self, slot: u64) -> Option<Cap<'a>> {
        self.caps.iter().find(|c| u64::from(c.slot) == slot).map(|c| c.cap)
    }
}

/// Why a process entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessError<'a> {
    /// The module name is empty or too long.
    BadModule,
    /// The CNode is outside 2^[`MIN_RADIX`]..=2^[`MAX_RADIX`] slots.
    BadRadix {
        /// The radix asked for.
        radix: u8,
    },
    /// The fault handler is not a declared endpoint.
    BadFault {
        /// The name given.
        name: &'a str,
    },
    /// One of its capabilities.
    Cap {
        /// The capability's slot.
        slot: u16,
        /// What is wrong with it.
        why: CapError<'a>,
    },
}

/// Why one capability of a process entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError<'a> {
    /// Slot 0 stays empty; 1 and 2 hold the process's CNode and VSpace.
    ReservedSlot,
    /// The slot is outside the process's CNode.
    OutsideCNode {
        /// The CNode's radix.
        radix: u8,
    },
    /// Another capability of the process has the same slot.
    DuplicateSlot,
    /// No object of that name is declared.
    UnknownObject {
        /// The name given.
        name: &'a str,
    },
    /// Rights that are none, or not all meaningful for an endpoint or notification.
    BadRights {
        /// The rights bits given.
        rights: u8,
    },
    /// Untyped memory outside 2^[`MIN_UNTYPED_BITS`]..=2^[`MAX_UNTYPED_BITS`] bytes.
    BadUntyped {
        /// The size asked for.
        bits: u8,
    },
    /// A port range that is reversed or reaches a port the kernel keeps.
    BadPorts {
        /// The first port.
        first: u16,
        /// The last port.
        last: u16,
    },
    /// An IRQ line the kernel keeps: 0, the timer, or 2, the cascade.
    KernelIrq {
        /// The line.
        line: u8,
    },
    /// No such IRQ line.
    NoIrq {
        /// The line.
        line: u8,
    },
    /// The line's handler is already given, to this process or another.
    IrqTwice {
        /// The line.
        line: u8,
        /// The process that has it already.
        holder: &'a str,
    },
}

impl core::fmt::Display for ProcessError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::BadModule => write!(f, "module name empty or too long"),
            Self::BadRadix { radix } => {
                write!(f, "cnode_radix {radix} is outside {MIN_RADIX}..={MAX_RADIX}")
            }
            Self::BadFault { name } => write!(f, "fault handler {name:?} is no declared endpoint"),
            Self::Cap { slot, why } => write!(f, "cap in slot {slot}: {why}"),
        }
    }
}

impl core::fmt::Display for CapError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::ReservedSlot => write!(
                f,
                "slots 0 (empty), 1 (its CNode) and 2 (its VSpace) are the root task's to fill"
            ),
            Self::OutsideCNode { radix } => {
                write!(f, "outside its CNode of 2^{radix} slots")
            }
            Self::DuplicateSlot => write!(f, "slot used twice"),
            Self::UnknownObject { name } => write!(f, "no endpoint or notification {name:?}"),
            Self::BadRights { rights } => write!(
                f,
                "rights {} are none or not only read, write, grant and call",
                RightsNames(rights)
            ),
            Self::BadUntyped { bits } => write!(
                f,
                "untyped of 2^{bits} bytes is outside 2^{MIN_UNTYPED_BITS}..=2^{MAX_UNTYPED_BITS}"
            ),
            Self::BadPorts { first, last } => write!(
                f,
                "io ports {first:#x}..={last:#x} are reversed or reach a port the kernel keeps \
                 (the PICs, the PIT)"
            ),
            Self::KernelIrq { line } => {
                write!(f, "irq {line} is the kernel's (0 the timer, 2 the cascade)")
            }
            Self::NoIrq { line } => write!(f, "there is no irq {line} (lines 0..{IRQ_LINES})"),
            Self::IrqTwice { line, holder } => {
                write!(f, "irq {line} is given to process {holder:?} already")
            }
        }
    }
}

/// Check one capability of `p` (the `index`th) against the declared `objects` and the
/// processes before it, `earlier`.
fn check_cap<'a>(
    p: &ProcessEntry<'a>,
    index: usize,
    objects: &[Object<'a>],
    earlier: &[ProcessEntry<'a>],
) -> Result<(), CapError<'a>> {
    let Some(c) = p.caps.get(index) else { return Ok(()) };
    let slot = u64::from(c.slot);
    if slot < slot::FIRST_LISTED {
        return Err(CapError::ReservedSlot);
    }
    if slot >> p.cnode_radix != 0 {
        return Err(CapError::OutsideCNode { radix: p.cnode_radix });
    }
    if p.caps.iter().take(index).any(|other| other.slot == c.slot) {
        return Err(CapError::DuplicateSlot);
    }
    match c.cap {
        Cap::Endpoint | Cap::Notification | Cap::OwnTcb => Ok(()),
        Cap::Named { name, rights, badge: _ } => {
            if !objects.iter().any(|o| o.name == name) {
                return Err(CapError::UnknownObject { name });
            }
            match Rights::from_bits(rights) {
                Some(r) if r != Rights::NONE && OBJECT_RIGHTS.contains(r) => Ok(()),
                _ => Err(CapError::BadRights { rights }),
            }
        }
        Cap::Untyped { bits } if !(MIN_UNTYPED_BITS..=MAX_UNTYPED_BITS).contains(&bits) => {
            Err(CapError::BadUntyped { bits })
        }
        Cap::Untyped { .. } => Ok(()),
        Cap::IoPorts { first, last } => {
            if first > last || root_range_covering(first, last).is_none() {
                return Err(CapError::BadPorts { first, last });
            }
            Ok(())
        }
        Cap::Irq { line } => {
            if line >= IRQ_LINES {
                return Err(CapError::NoIrq { line });
            }
            if line == IRQ_TIMER || line == IRQ_CASCADE {
                return Err(CapError::KernelIrq { line });
            }
            let has = |q: &ProcessEntry<'_>, upto: usize| {
                q.caps.iter().take(upto).any(|o| o.cap == Cap::Irq { line })
            };
            if let Some(holder) = earlier.iter().find(|q| has(q, MAX_CAPS)) {
                return Err(CapError::IrqTwice { line, holder: holder.name });
            }
            if has(p, index) {
                return Err(CapError::IrqTwice { line, holder: p.name });
            }
            Ok(())
        }
    }
}

/// Check process entry `p` against the declared `objects` and the processes before it,
/// `earlier` (names are checked by the caller, which sees them all).
pub fn check<'a>(
    p: &ProcessEntry<'a>,
    objects: &[Object<'a>],
    earlier: &[ProcessEntry<'a>],
) -> Result<(), ProcessError<'a>> {
    if !super::name_ok(p.module) {
        return Err(ProcessError::BadModule);
    }
    if !(MIN_RADIX..=MAX_RADIX).contains(&p.cnode_radix) {
        return Err(ProcessError::BadRadix { radix: p.cnode_radix });
    }
    if let Some(name) = p.fault {
        if !objects.iter().any(|o| o.name == name && o.kind == ObjectKind::Endpoint) {
            return Err(ProcessError::BadFault { name });
        }
    }
    for (index, c) in p.caps.iter().enumerate() {
        check_cap(p, index, objects, earlier)
            .map_err(|why| ProcessError::Cap { slot: c.slot, why })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, Cap, CapEntry, CapError, Object, ObjectKind, ProcessEntry, ProcessError};
    use super::{Start, MAX_RADIX};

    const OBJECTS: [Object<'static>; 2] = [
        Object { name: "ep", kind: ObjectKind::Endpoint },
        Object { name: "n", kind: ObjectKind::Notification },
    ];

    fn process(name: &'static str, caps: &[(u16, Cap<'static>)]) -> ProcessEntry<'static> {
        let mut p = ProcessEntry {
            name,
            module: "m",
            priority: 1,
            cnode_radix: 4,
            arg: 0,
            fault: None,
            start: Start::Boot,
            caps: heapless::Vec::new(),
        };
        for &(slot, cap) in caps {
            p.caps.push(CapEntry { slot, cap }).unwrap();
        }
        p
    }

    fn cap_error(p: &ProcessEntry<'static>) -> Option<(u16, CapError<'static>)> {
        match check(p, &OBJECTS, &[]) {
            Err(ProcessError::Cap { slot, why }) => Some((slot, why)),
            Ok(()) => None,
            Err(e) => panic!("not a cap error: {e}"),
        }
    }

    #[test]
    fn a_process_with_every_kind_of_cap_passes() {
        let caps = [
            (3, Cap::Endpoint),
            (4, Cap::Notification),
            (5, Cap::Named { name: "ep", rights: 0b1000, badge: 7 }),
            (6, Cap::Named { name: "n", rights: 0b0010, badge: 0 }),
            (7, Cap::Untyped { bits: 12 }),
            (8, Cap::IoPorts { first: 0x3f8, last: 0x3ff }),
            (9, Cap::Irq { line: 4 }),
            (15, Cap::OwnTcb),
        ];
        let mut p = process("p", &caps);
        p.fault = Some("ep");
        assert_eq!(check(&p, &OBJECTS, &[]), Ok(()));
        assert_eq!(p.cap(9), Some(Cap::Irq { line: 4 }));
        assert_eq!(p.cap(10), None);
    }

    #[test]
    fn slots_are_checked() {
        for slot in [0, 1, 2] {
            let p = process("p", &[(slot, Cap::Endpoint)]);
            assert_eq!(cap_error(&p), Some((slot, CapError::ReservedSlot)));
        }
        let p = process("p", &[(16, Cap::Endpoint)]);
        assert_eq!(cap_error(&p), Some((16, CapError::OutsideCNode { radix: 4 })));
        let p = process("p", &[(3, Cap::Endpoint), (4, Cap::OwnTcb), (3, Cap::Notification)]);
        assert_eq!(cap_error(&p), Some((3, CapError::DuplicateSlot)));
    }

    #[test]
    fn every_kind_is_checked() {
        let named = |name, rights| Cap::Named { name, rights, badge: 0 };
        let cases = [
            (named("nope", 1), CapError::UnknownObject { name: "nope" }),
            (named("ep", 0), CapError::BadRights { rights: 0 }),
            (named("ep", 0b1_0000), CapError::BadRights { rights: 0b1_0000 }),
            (named("ep", 0b100_0000), CapError::BadRights { rights: 0b100_0000 }),
            (Cap::Untyped { bits: 11 }, CapError::BadUntyped { bits: 11 }),
            (Cap::Untyped { bits: 29 }, CapError::BadUntyped { bits: 29 }),
            (
                Cap::IoPorts { first: 0x81, last: 0x80 },
                CapError::BadPorts { first: 0x81, last: 0x80 },
            ),
            (
                Cap::IoPorts { first: 0x3f, last: 0x44 },
                CapError::BadPorts { first: 0x3f, last: 0x44 },
            ),
            (
                Cap::IoPorts { first: 0xa0, last: 0xa0 },
                CapError::BadPorts { first: 0xa0, last: 0xa0 },
            ),
            (Cap::Irq { line: 0 }, CapError::KernelIrq { line: 0 }),
            (Cap::Irq { line: 2 }, CapError::KernelIrq { line: 2 }),
            (Cap::Irq { line: 16 }, CapError::NoIrq { line: 16 }),
        ];
        for (cap, why) in cases {
            assert_eq!(cap_error(&process("p", &[(5, cap)])), Some((5, why)), "{cap}");
        }
    }

    #[test]
    fn an_irq_line_is_given_once() {
        let first = process("first", &[(3, Cap::Irq { line: 4 })]);
        let again = process("again", &[(3, Cap::Irq { line: 5 }), (4, Cap::Irq { line: 4 })]);
        assert_eq!(check(&again, &OBJECTS, &[]), Ok(()));
        let why = CapError::IrqTwice { line: 4, holder: "first" };
        assert_eq!(
            check(&again, &OBJECTS, core::slice::from_ref(&first)),
            Err(ProcessError::Cap { slot: 4, why })
        );
        let twice = process("twice", &[(3, Cap::Irq { line: 4 }), (5, Cap::Irq { line: 4 })]);
        let why = CapError::IrqTwice { line: 4, holder: "twice" };
        assert_eq!(check(&twice, &OBJECTS, &[]), Err(ProcessError::Cap { slot: 5, why }));
    }

    #[test]
    fn the_entry_itself_is_checked() {
        let mut p = process("p", &[]);
        p.fault = Some("n");
        assert_eq!(check(&p, &OBJECTS, &[]), Err(ProcessError::BadFault { name: "n" }));
        p.fault = None;
        for radix in [0, 1, MAX_RADIX + 1] {
            p.cnode_radix = radix;
            assert_eq!(check(&p, &OBJECTS, &[]), Err(ProcessError::BadRadix { radix }));
        }
        p.cnode_radix = 2;
        p.module = "";
        assert_eq!(check(&p, &OBJECTS, &[]), Err(ProcessError::BadModule));
    }

    #[test]
    fn refusals_read_well() {
        let e = ProcessError::Cap { slot: 4, why: CapError::KernelIrq { line: 0 } };
        assert_eq!(
            e.to_string(),
            "cap in slot 4: irq 0 is the kernel's (0 the timer, 2 the cascade)"
        );
        let named = Cap::Named { name: "report", rights: 0b1000, badge: 0xf022 };
        assert_eq!(named.to_string(), "\"report\" (call, badge 0xf022)");
        let named = Cap::Named { name: "console", rights: 0b1001, badge: 0 };
        assert_eq!(named.to_string(), "\"console\" (read+call)");
        let e = CapError::BadRights { rights: 0b1_0000 };
        assert_eq!(
            e.to_string(),
            "rights 0b10000 are none or not only read, write, grant and call"
        );
    }
}
