//! The ring-3 programs an image carries, found in the workspace rather than listed here:
//! a member crate that declares `[package.metadata.system] module = "NAME"` is built for
//! the images and carried as boot module NAME, and its `role` (`"vmm"`, `"device-model"`)
//! says what else a manifest may use it for. A new program or VMM is a crate with that
//! table and a manifest entry naming its module.

use crate::{err, Result};
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

/// The root task: the one program the kernel itself starts (not a module a manifest
/// names), built with the others.
pub const ROOT_TASK: &str = "init";

/// A program an image carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Its boot module's name, as manifests name it.
    pub module: String,
    /// Its crate.
    pub package: String,
    /// What else it is (`"vmm"`, `"device-model"`), if anything.
    pub role: Option<String>,
}

/// The programs, in the workspace's member order (read once).
pub fn all() -> Result<&'static [Program]> {
    static PROGRAMS: OnceLock<std::result::Result<Vec<Program>, String>> = OnceLock::new();
    PROGRAMS
        .get_or_init(|| read(&crate::root()).map_err(|e| e.to_string()))
        .as_deref()
        .map_err(|e| err!("{e}"))
}

/// The crates `cargo::build_user` builds: the root task and every program.
pub fn packages() -> Result<Vec<&'static str>> {
    Ok(std::iter::once(ROOT_TASK).chain(all()?.iter().map(|p| p.package.as_str())).collect())
}

/// The modules of the programs whose role is `role`.
pub fn modules_with_role(role: &str) -> Result<Vec<&'static str>> {
    Ok(all()?
        .iter()
        .filter(|p| p.role.as_deref() == Some(role))
        .map(|p| p.module.as_str())
        .collect())
}

/// Read the programs of the workspace at `root`.
pub fn read(root: &Path) -> Result<Vec<Program>> {
    let table = |path: &Path| -> Result<toml::Table> {
        let text = fs::read_to_string(path).map_err(|e| err!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| err!("{}: {e}", path.display()))
    };
    let workspace = table(&root.join("Cargo.toml"))?;
    let members = workspace
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .ok_or_else(|| err!("Cargo.toml: no [workspace] members"))?;
    let mut programs: Vec<Program> = Vec::new();
    for member in members.iter().filter_map(toml::Value::as_str) {
        let path = root.join(member).join("Cargo.toml");
        let manifest = table(&path)?;
        let package = manifest.get("package");
        let system = package.and_then(|p| p.get("metadata")).and_then(|m| m.get("system"));
        let text = |key: &str| system.and_then(|s| s.get(key)).and_then(toml::Value::as_str);
        let Some(module) = text("module") else {
            if let Some(role) = text("role") {
                return Err(err!("{}: role {role:?} without a module name", path.display()));
            }
            continue;
        };
        let name = package.and_then(|p| p.get("name")).and_then(toml::Value::as_str);
        let name = name.ok_or_else(|| err!("{}: no package name", path.display()))?;
        if let Some(other) = programs.iter().find(|p| p.module == module) {
            return Err(err!(
                "{}: module {module:?} is already the module of {}",
                path.display(),
                other.package
            ));
        }
        programs.push(Program {
            module: module.to_string(),
            package: name.to_string(),
            role: text("role").map(String::from),
        });
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::{read, Program};

    #[test]
    fn the_workspace_declares_its_programs() {
        let programs = read(&crate::root()).unwrap();
        let find = |m: &str| programs.iter().find(|p| p.module == m).cloned();
        assert_eq!(
            find("vmm"),
            Some(Program {
                module: "vmm".into(),
                package: "vmm-server".into(),
                role: Some("vmm".into())
            })
        );
        assert_eq!(find("uart").and_then(|p| p.role).as_deref(), Some("device-model"));
        assert_eq!(find("console").map(|p| p.package).as_deref(), Some("console-driver"));
        assert_eq!(find("fuzzer").and_then(|p| p.role), None);
        assert!(programs.iter().all(|p| p.package != "init"), "the root task is no module");
    }

    #[test]
    fn a_program_is_a_crate_with_a_module_name() {
        let dir = std::env::temp_dir().join(format!("programs-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("Cargo.toml", "[workspace]\nmembers = [\"a\", \"b\", \"lib\"]\n");
        write("a/Cargo.toml", "[package]\nname = \"my-vmm\"\n[package.metadata.system]\nmodule = \"myvmm\"\nrole = \"vmm\"\n");
        write(
            "b/Cargo.toml",
            "[package]\nname = \"tool\"\n[package.metadata.system]\nmodule = \"tool\"\n",
        );
        write("lib/Cargo.toml", "[package]\nname = \"lib\"\n");
        let found = read(&dir).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].module.as_str(), found[0].role.as_deref()), ("myvmm", Some("vmm")));
        write(
            "lib/Cargo.toml",
            "[package]\nname = \"lib\"\n[package.metadata.system]\nmodule = \"tool\"\n",
        );
        let e = read(&dir).unwrap_err().to_string();
        assert!(e.contains("already the module of tool"), "{e}");
        write(
            "lib/Cargo.toml",
            "[package]\nname = \"lib\"\n[package.metadata.system]\nrole = \"vmm\"\n",
        );
        let e = read(&dir).unwrap_err().to_string();
        assert!(e.contains("without a module name"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
