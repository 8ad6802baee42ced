//! The system the manifest describes, as the root task builds it: first the named
//! endpoints and notifications, whose originals it keeps, then every process in manifest
//! order, each with exactly the capabilities its entry lists, started at once or after
//! the VMs. A process that cannot be made is reported, naming it and the capability that
//! failed, and left out; the rest of the run goes on. Each process's test line is
//! `<name>_started`.

use crate::alloc::Alloc;
use crate::console::Console;
use crate::grant;
use crate::process::{self, Images, Process};
use core::fmt::{self, Write as _};
use protocols::error::Error;
use protocols::manifest::{
    self, Cap, CapEntry, Manifest, ObjectKind, ProcessEntry, Start, MAX_NAME, MAX_OBJECTS,
    MAX_PROCESSES,
};
use protocols::object::ObjectType;
use protocols::rights::Rights;
use rt::testing::Suite;

/// The manifest module, decoded and checked; `None` without one, or (with a failing
/// `manifest` line) when it does not decode.
pub fn load(t: &mut Suite, a: &mut Alloc) -> Option<Manifest<'static>> {
    let desc = process::module(manifest::MODULE)?;
    let bytes = match process::map_module(a, &desc) {
        Ok(bytes) => bytes,
        Err(e) => {
            t.check("manifest", Err(e.name()));
            return None;
        }
    };
    Manifest::decode(bytes).map_err(|e| t.check("manifest", Err(e))).ok()
}

/// Where one process stands.
#[derive(Clone, Copy)]
enum State {
    /// It could not be made or started (its line says why).
    Failed,
    /// Made, waiting for the VMs to end.
    Made(Process),
    /// Started.
    Running,
}

/// The named objects and processes of a manifest.
pub struct System<'m> {
    manifest: &'m Manifest<'static>,
    /// The root task's slot of each named object, in manifest order.
    objects: heapless::Vec<Result<u64, Error>, MAX_OBJECTS>,
    /// Each process, in manifest order.
    states: heapless::Vec<State, MAX_PROCESSES>,
    console: Option<Console>,
}

impl<'m> System<'m> {
    /// Make the named objects and every process, and start those that start at boot.
    pub fn build(
        t: &mut Suite,
        a: &mut Alloc,
        manifest: &'m Manifest<'static>,
        images: &mut Images,
    ) -> Self {
        // As many as the manifest's list, whose capacity is the same.
        let objects = manifest
            .objects
            .iter()
            .map(|o| match o.kind {
                ObjectKind::Endpoint => a.make(ObjectType::Endpoint, 0),
                ObjectKind::Notification => a.make(ObjectType::Notification, 0),
            })
            .collect();
        let mut s = Self { manifest, objects, states: heapless::Vec::new(), console: None };
        for entry in &manifest.processes {
            let state = match s.make(a, images, entry) {
                Err(why) => {
                    t.check(&line(entry.name), Err(why));
                    State::Failed
                }
                Ok(p) if entry.start == Start::AfterVms => State::Made(p),
                Ok(p) => s.start(t, a, entry, p),
            };
            // The manifest holds at most as many processes as there are states.
            let _ = s.states.push(state);
        }
        s
    }

    /// The console driver, once it serves the root task.
    pub fn console(&self) -> Option<Console> {
        self.console
    }

    /// Start the processes that wait for the VMs to end.
    pub fn start_after_vms(&mut self, t: &mut Suite, a: &mut Alloc) {
        let manifest = self.manifest;
        for (i, entry) in manifest.processes.iter().enumerate() {
            if let Some(&State::Made(p)) = self.states.get(i) {
                let state = self.start(t, a, entry, p);
                if let Some(s) = self.states.get_mut(i) {
                    *s = state;
                }
            }
        }
    }

    /// The entry of the running process whose program is boot module `module`.
    pub fn running(&self, module: &str) -> Option<&'m ProcessEntry<'static>> {
        let manifest = self.manifest;
        let mut running = manifest.processes.iter().zip(&self.states);
        running.find(|(e, s)| e.module == module && matches!(s, State::Running)).map(|(e, _)| e)
    }

    /// The root task's slot of the named object `name`.
    pub fn named(&self, name: &str) -> Result<u64, Error> {
        let (index, _) = self.manifest.object(name).ok_or(Error::InvalidArgument)?;
        self.objects.get(index).copied().unwrap_or(Err(Error::InvalidArgument))
    }

    /// Make the process of `entry`, with its capabilities, without starting it.
    fn make(
        &self,
        a: &mut Alloc,
        images: &mut Images,
        entry: &'m ProcessEntry<'static>,
    ) -> Result<Process, Refused<'m>> {
        let refused = |what| Refused { process: entry.name, what };
        let module = process::module(entry.module).ok_or(refused(What::NoModule(entry.module)))?;
        let fault = match entry.fault {
            Some(name) => self.named(name).map_err(|e| refused(What::Fault(name, e)))?,
            None => u64::MAX,
        };
        let (radix, priority) = (entry.cnode_radix.into(), entry.priority.into());
        let p = process::spawn(a, images, &module, radix, priority, fault, entry.arg)
            .map_err(|e| refused(What::Spawn(e)))?;
        for c in &entry.caps {
            grant::give(a, &p, c, |name| self.named(name))
                .map_err(|e| refused(What::Cap(*c, e)))?;
        }
        Ok(p)
    }

    /// Start `p`, made from `entry`, report it, and print through it from now on if it is
    /// the console driver.
    fn start(
        &mut self,
        t: &mut Suite,
        a: &mut Alloc,
        entry: &'m ProcessEntry<'static>,
        p: Process,
    ) -> State {
        if let Err(e) = process::start(&p) {
            t.check(&line(entry.name), Err(Refused { process: entry.name, what: What::Start(e) }));
            return State::Failed;
        }
        if self.console.is_none() && serves_console(entry) {
            let input = self.named(manifest::CONSOLE_INPUT_NOTIFICATION).ok();
            match self.named(manifest::CONSOLE_ENDPOINT).and_then(|ep| Console::attach(a, ep)) {
                Ok(c) => self.console = Some(c.with_input(input)),
                Err(e) => t.check("init_prints_through_the_console_driver", Err(e.name())),
            }
        }
        t.check(&line(entry.name), Ok::<(), &str>(()));
        State::Running
    }
}

/// Whether `entry` receives on the console endpoint: it is the console driver.
fn serves_console(entry: &ProcessEntry<'_>) -> bool {
    entry.caps.iter().any(|c| match c.cap {
        Cap::Named { name, rights, .. } => {
            name == manifest::CONSOLE_ENDPOINT && rights & Rights::READ.bits() != 0
        }
        _ => false,
    })
}

/// A process's test line.
fn line(name: &str) -> heapless::String<{ MAX_NAME + 8 }> {
    let mut s = heapless::String::new();
    // Names are at most MAX_NAME bytes (the manifest was checked), so this fits.
    let _ = write!(s, "{name}_started");
    s
}

/// Why a process was left out.
pub struct Refused<'a> {
    process: &'a str,
    what: What<'a>,
}

/// The step that failed.
enum What<'a> {
    /// The image has no such boot module.
    NoModule(&'a str),
    /// Loading the program or making its CNode, address space or thread.
    Spawn(Error),
    /// The fault endpoint named.
    Fault(&'a str, Error),
    /// One of its capabilities.
    Cap(CapEntry<'a>, Error),
    /// Starting it.
    Start(Error),
}

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {:?}", self.process)?;
        match &self.what {
            What::NoModule(m) => write!(f, ": no boot module {m:?}"),
            What::Spawn(e) => write!(f, ": loading it: {}", e.name()),
            What::Fault(name, e) => write!(f, ", fault handler {name:?}: {}", e.name()),
            What::Cap(c, e) => write!(f, ", slot {} ({}): {}", c.slot, c.cap, e.name()),
            What::Start(e) => write!(f, ": starting it: {}", e.name()),
        }
    }
}
