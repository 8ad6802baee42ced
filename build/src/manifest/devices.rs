//! A `[[vm]]`'s `devices` key: the kinds by name, each with its place where it moves.
//! The rules between devices are `protocols::devices`' (the root task checks the set
//! again with the rest of the manifest); only a kind's name is the build tool's to know.

use crate::{err, Result};
use protocols::devices::{Device, DeviceSet, Kind, MAX_DEVICES};
use protocols::manifest::{DeviceProcess, Error};
use serde::Deserialize;

/// One entry of `devices = [...]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    kind: String,
    #[serde(default)]
    ports: Option<[u16; 2]>,
    #[serde(default)]
    mmio: Option<[u64; 2]>,
    #[serde(default)]
    irq: Option<u8>,
    /// The device runs as this device-model program, out of process.
    #[serde(default)]
    process: Option<String>,
}

/// The device of `entries` that runs out of process: its kind and the device model's
/// module, which must be one of `models` (the programs whose crate declares the
/// device-model role); at most one per VM.
pub fn process<'a>(
    vm: &str,
    entries: &'a [Entry],
    models: &[&str],
) -> Result<Option<DeviceProcess<'a>>> {
    let mut found = None;
    for e in entries {
        let (Some(module), Some(kind)) = (&e.process, Kind::from_name(&e.kind)) else { continue };
        if found.is_some() {
            return Err(err!(
                "vm {vm:?}: device {}: a second device out of process (at most one per VM)",
                kind.name()
            ));
        }
        if !models.contains(&module.as_str()) {
            return Err(err!(
                "vm {vm:?}: device {}: module {module:?} is not a device model: its crate does not declare [package.metadata.system] role = \"device-model\" (the device models: {})",
                kind.name(),
                models.join(", ")
            ));
        }
        found = Some(DeviceProcess { kind, module });
    }
    Ok(found)
}

/// The devices of the VM `vm`, checked, as the manifest carries them.
pub fn set(vm: &str, entries: &[Entry]) -> Result<DeviceSet> {
    let mut list = heapless::Vec::<Device, MAX_DEVICES>::new();
    for (index, e) in entries.iter().enumerate() {
        let kind = Kind::from_name(&e.kind).ok_or_else(|| {
            let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            err!("vm {vm:?}: device #{index}: unknown kind {:?} ({})", e.kind, known.join(", "))
        })?;
        let device = Device {
            kind,
            ports: e.ports.map(|[first, last]| (first, last)),
            mmio: e.mmio.map(|[first, last]| (first, last)),
            irq: e.irq,
        };
        list.push(device).map_err(|_| {
            err!("vm {vm:?}: {} devices: at most {MAX_DEVICES}, one of each kind", entries.len())
        })?;
    }
    DeviceSet::check(&list).map_err(|why| err!("{}", Error::Device { name: vm, why }))
}
