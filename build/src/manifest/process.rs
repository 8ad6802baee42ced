//! The `[[process]]` entries of a manifest and the named objects they share: read from
//! TOML, checked for what only the build tool can know (the image's modules, the words
//! people write: kinds, rights, start times) and turned into `protocols::manifest` entries,
//! whose own check then covers the rest. Every refusal names the process and the cap.

use crate::{err, Result};
use protocols::manifest::{
    Cap, CapEntry, CapError, Manifest, ObjectKind, ProcessEntry, Start, MAX_CAPS, RIGHT_NAMES,
    ROOT_PRIORITY,
};
use serde::Deserialize;

/// One `[[process]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    name: String,
    module: String,
    /// Wider than the encoded `u8`, so that a priority above the root task's is refused
    /// with a message of its own rather than a parse error.
    priority: u64,
    cnode_radix: u8,
    #[serde(default)]
    arg: u64,
    #[serde(default)]
    fault: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    caps: Vec<CapToml>,
}

/// One capability, an inline table tagged by `kind`.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum CapToml {
    Endpoint {
        slot: u64,
        name: Option<String>,
        rights: Option<Vec<String>>,
        badge: Option<u64>,
    },
    Notification {
        slot: u64,
        name: Option<String>,
        rights: Option<Vec<String>>,
        badge: Option<u64>,
    },
    Untyped {
        slot: u64,
        bits: u8,
    },
    IoPorts {
        slot: u64,
        ports: [u16; 2],
    },
    Irq {
        slot: u64,
        line: u8,
    },
    Tcb {
        slot: u64,
    },
}

impl CapToml {
    fn slot(&self) -> u64 {
        match *self {
            Self::Endpoint { slot, .. }
            | Self::Notification { slot, .. }
            | Self::Untyped { slot, .. }
            | Self::IoPorts { slot, .. }
            | Self::Irq { slot, .. }
            | Self::Tcb { slot } => slot,
        }
    }
}

/// The rights named in `names` as `rights::Rights` bits.
fn rights(names: &[String]) -> Result<u8> {
    names.iter().try_fold(0, |bits, name| {
        let (_, right) = RIGHT_NAMES.iter().find(|(n, _)| n == name).ok_or_else(|| {
            let known: Vec<_> = RIGHT_NAMES.iter().map(|(n, _)| *n).collect();
            err!("unknown right {name:?} ({})", known.join(", "))
        })?;
        Ok(bits | right.bits())
    })
}

/// `kind` with its article, for messages.
fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Endpoint => "an endpoint",
        ObjectKind::Notification => "a notification",
    }
}

/// An endpoint or notification cap: fresh without a name, else a copy of the named object
/// (which must be one of `kind`), with the rights it must state and an optional badge.
fn object_cap<'a>(
    m: &Manifest<'a>,
    kind: ObjectKind,
    name: &'a Option<String>,
    names: &Option<Vec<String>>,
    badge: Option<u64>,
) -> Result<Cap<'a>> {
    let what = kind_name(kind);
    let Some(name) = name else {
        if names.is_some() || badge.is_some() {
            return Err(err!(
                "{what} made for it alone has every right and no badge (copy a named one \
                 to narrow or badge it)"
            ));
        }
        return Ok(match kind {
            ObjectKind::Endpoint => Cap::Endpoint,
            ObjectKind::Notification => Cap::Notification,
        });
    };
    match m.object(name) {
        None => return Err(err!("{}", CapError::UnknownObject { name })),
        Some((_, declared)) if declared != kind => {
            return Err(err!("{name:?} is {}, not {what}", kind_name(declared)));
        }
        Some(_) => {}
    }
    let names = names.as_deref().ok_or_else(|| {
        err!("a copy of {name:?} must state its rights (read, write, grant, call)")
    })?;
    Ok(Cap::Named { name, rights: rights(names)?, badge: badge.unwrap_or(0) })
}

fn cap<'a>(m: &Manifest<'a>, radix: u8, c: &'a CapToml) -> Result<CapEntry<'a>> {
    let slot = u16::try_from(c.slot()).map_err(|_| err!("{}", CapError::OutsideCNode { radix }))?;
    let cap = match c {
        CapToml::Endpoint { name, rights, badge, .. } => {
            object_cap(m, ObjectKind::Endpoint, name, rights, *badge)?
        }
        CapToml::Notification { name, rights, badge, .. } => {
            object_cap(m, ObjectKind::Notification, name, rights, *badge)?
        }
        CapToml::Untyped { bits, .. } => Cap::Untyped { bits: *bits },
        CapToml::IoPorts { ports: [first, last], .. } => {
            Cap::IoPorts { first: *first, last: *last }
        }
        CapToml::Irq { line, .. } => Cap::Irq { line: *line },
        CapToml::Tcb { .. } => Cap::OwnTcb,
    };
    Ok(CapEntry { slot, cap })
}

fn start(p: &Process) -> Result<Start> {
    match p.start.as_deref() {
        None | Some("boot") => Ok(Start::Boot),
        Some("after vms") => Ok(Start::AfterVms),
        Some(other) => Err(err!("start {other:?} is neither \"boot\" nor \"after vms\"")),
    }
}

/// The encoded entry of `p`, whose module must be one of `modules`; `m` holds the named
/// objects, already read.
pub fn entry<'a>(m: &Manifest<'a>, p: &'a Process, modules: &[&str]) -> Result<ProcessEntry<'a>> {
    let at = |e: crate::Error| err!("process {:?}: {e}", p.name);
    if !modules.contains(&p.module.as_str()) {
        return Err(at(err!(
            "unknown module {:?} (the image has: {})",
            p.module,
            modules.join(", ")
        )));
    }
    if p.priority > u64::from(ROOT_PRIORITY) {
        return Err(at(err!("priority {} is above the root task's ({ROOT_PRIORITY})", p.priority)));
    }
    let priority = u8::try_from(p.priority).unwrap_or(ROOT_PRIORITY);
    let mut caps = heapless::Vec::new();
    for c in &p.caps {
        let entry =
            cap(m, p.cnode_radix, c).map_err(|e| at(err!("cap in slot {}: {e}", c.slot())))?;
        caps.push(entry).map_err(|_| at(err!("more than {MAX_CAPS} caps")))?;
    }
    Ok(ProcessEntry {
        name: &p.name,
        module: &p.module,
        priority,
        cnode_radix: p.cnode_radix,
        arg: p.arg,
        fault: p.fault.as_deref(),
        start: start(p).map_err(at)?,
        caps,
    })
}

#[cfg(test)]
mod tests {
    use protocols::manifest::{slot, Cap, Manifest, ProcessEntry, Start, CONSOLE_ENDPOINT};
    use protocols::rights::Rights;

    fn default_manifest() -> Vec<u8> {
        manifest("default.toml")
    }

    fn manifest(file: &str) -> Vec<u8> {
        let path = crate::root().join("images").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut modules = crate::image::modules().unwrap();
        modules.extend(crate::linux::MODULES);
        super::super::encode(&path, &text, &modules).unwrap()
    }

    fn by_module<'a>(m: &'a Manifest<'_>, module: &str) -> &'a ProcessEntry<'a> {
        m.processes.iter().find(|p| p.module == module).unwrap()
    }

    #[test]
    fn the_linux_console_driver_signals_the_input_owner() {
        use protocols::console::{slot as driver, UNTYPED_BITS};
        use protocols::manifest::CONSOLE_INPUT_NOTIFICATION;
        let bytes = manifest("linux.toml");
        let m = Manifest::decode(&bytes).unwrap();
        let p = by_module(&m, "console");
        let signal =
            Cap::Named { name: CONSOLE_INPUT_NOTIFICATION, rights: Rights::WRITE.bits(), badge: 0 };
        assert_eq!(p.cap(driver::INPUT_NOTIFICATION), Some(signal));
        assert_eq!(p.cap(driver::UNTYPED), Some(Cap::Untyped { bits: UNTYPED_BITS }));
        let owners: Vec<_> = m.vms.iter().filter(|v| v.console_input).map(|v| v.name).collect();
        assert_eq!(owners, ["vm_linux"]);
    }

    #[test]
    fn the_console_driver_gets_the_slots_it_expects() {
        use protocols::console::{slot as driver, CNODE_RADIX, IRQ, PORTS, UNTYPED_BITS};
        let bytes = default_manifest();
        let m = Manifest::decode(&bytes).unwrap();
        let p = by_module(&m, "console");
        assert_eq!(m.processes[0].name, p.name, "the console driver comes first");
        assert_eq!((driver::CNODE, driver::VSPACE), (slot::CNODE, slot::VSPACE));
        assert_eq!((p.cnode_radix, p.start, p.fault), (CNODE_RADIX, Start::Boot, None));
        let serve = Cap::Named { name: CONSOLE_ENDPOINT, rights: Rights::READ.bits(), badge: 0 };
        let want = [
            (driver::PORTS, Cap::IoPorts { first: PORTS.0, last: PORTS.1 }),
            (driver::IRQ_HANDLER, Cap::Irq { line: IRQ }),
            (driver::IRQ_NOTIFICATION, Cap::Notification),
            (driver::ENDPOINT, serve),
            (driver::UNTYPED, Cap::Untyped { bits: UNTYPED_BITS }),
        ];
        let got: Vec<_> = p.caps.iter().map(|c| (u64::from(c.slot), c.cap)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_fuzzer_gets_the_slots_it_expects() {
        use syscall_fuzzer::{slot as fuzzer, split_arg, CNODE_RADIX, PRIORITY, UNTYPED_BITS};
        let bytes = default_manifest();
        let m = Manifest::decode(&bytes).unwrap();
        let p = by_module(&m, "fuzzer");
        assert_eq!((fuzzer::CNODE, fuzzer::VSPACE), (slot::CNODE, slot::VSPACE));
        assert_eq!((p.cnode_radix, u64::from(p.priority)), (CNODE_RADIX, PRIORITY));
        assert_eq!(p.start, Start::AfterVms, "the fuzzer runs after the VMs");
        let Some(Cap::Named { name: report, rights, badge }) = p.cap(fuzzer::REPORT) else {
            panic!("no report endpoint in slot {}", fuzzer::REPORT)
        };
        assert_eq!((rights, p.fault), (Rights::CALL.bits(), Some(report)));
        assert_ne!(badge, 0, "the report is badged");
        let want = [
            (fuzzer::UNTYPED, Cap::Untyped { bits: UNTYPED_BITS }),
            (fuzzer::ENDPOINT, Cap::Endpoint),
            (fuzzer::NOTIFICATION, Cap::Notification),
            (fuzzer::REPORT, Cap::Named { name: report, rights, badge }),
            (fuzzer::SELF_TCB, Cap::OwnTcb),
            (fuzzer::PARTNER_UNTYPED, Cap::Untyped { bits: 12 }),
        ];
        let got: Vec<_> = p.caps.iter().map(|c| (u64::from(c.slot), c.cap)).collect();
        assert_eq!(got, want);
        assert!(got.iter().all(|&(s, _)| s < fuzzer::FIRST_FREE && s != fuzzer::PARTNER_TCB));
        let (seed, iterations) = split_arg(p.arg);
        assert_eq!((seed, iterations), (0x5eed_f022, 4096));
    }
}
