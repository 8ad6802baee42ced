//! Files taken from Debian packages: downloaded with `apt-get download` (no install, no
//! root needed) into a cache under `target/`, unpacked with `dpkg-deb -x`. A meta package
//! (`linux-image-cloud-amd64`) is first resolved to the package it depends on, so the
//! cache holds a versioned `.deb` and a newer kernel in the archive means a new download,
//! not a stale one. On a host without apt the caller's error names the variable that
//! points at the file instead.

use crate::progress::Status;
use crate::{err, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tool(program: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    if found {
        Ok(())
    } else {
        Err(err!("{program} not found: fetching Debian packages needs apt-get and dpkg-deb"))
    }
}

/// The package a meta package depends on (the first `Depends:` of `apt-cache depends`
/// that is a real package), or the name itself for an ordinary package.
pub fn resolve(package: &str) -> Result<String> {
    tool("apt-cache")?;
    let out = Command::new("apt-cache").args(["depends", package]).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(err!(
            "apt-cache knows no package {package} (run `apt-get update`?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(depends_on(&text, package).unwrap_or(package).to_string())
}

/// For a meta package whose name is a prefix pattern of what it pulls in
/// (`linux-image-cloud-amd64` → `linux-image-6.1.0-57-cloud-amd64`), the dependency
/// that shares its first and last words; `None` for an ordinary package.
fn depends_on<'a>(apt_cache: &'a str, package: &str) -> Option<&'a str> {
    let first = package.split('-').take(2).collect::<Vec<_>>().join("-");
    let last = package.rsplit('-').take(2).collect::<Vec<_>>();
    apt_cache
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|d| d.trim_matches(|c| c == '<' || c == '>'))
        .find(|d| *d != package && d.starts_with(&first) && last.iter().all(|w| d.contains(w)))
}

/// The `.deb` of `package` in `cache`, downloaded if it is not there yet.
pub fn download(package: &str, cache: &Path) -> Result<PathBuf> {
    fs::create_dir_all(cache)?;
    let cached = |cache: &Path| -> Result<Option<PathBuf>> {
        let prefix = format!("{package}_");
        Ok(fs::read_dir(cache)?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&prefix) && name.ends_with(".deb")
        }))
    };
    if let Some(deb) = cached(cache)? {
        return Ok(deb);
    }
    tool("apt-get")?;
    Status::start(format!("downloading the Debian package {package}"))
        .run(
            Command::new("apt-get")
                .args(["download", "-q", package])
                .current_dir(cache)
                .stdin(Stdio::null()),
            "apt-download",
        )
        .map_err(|e| err!("`apt-get download {package}` failed: {e}"))?;
    cached(cache)?
        .ok_or_else(|| err!("apt-get download {package} left no .deb in {}", cache.display()))
}

/// Unpack `deb` into `dir` (emptied first) and return `dir`.
pub fn unpack(deb: &Path, dir: &Path) -> Result<PathBuf> {
    tool("dpkg-deb")?;
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let out = Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir).output()?;
    if !out.status.success() {
        return Err(err!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::depends_on;

    #[test]
    fn a_meta_package_resolves_to_the_versioned_one() {
        let apt = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-57-cloud-amd64\n";
        assert_eq!(
            depends_on(apt, "linux-image-cloud-amd64"),
            Some("linux-image-6.1.0-57-cloud-amd64")
        );
        let plain = "busybox-static\n  Depends: libc6\n  Conflicts: busybox\n";
        assert_eq!(depends_on(plain, "busybox-static"), None);
        assert_eq!(depends_on("", "x"), None);
    }
}
