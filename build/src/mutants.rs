//! `cargo xtask mutants`: mutation testing of the kernel's capability, IPC, scheduling,
//! fastpath, untyped, Reply and vCPU-reply-validation code with cargo-mutants. What is
//! mutated and which tests must kill each mutant (the kernel's unit tests and the fuzz
//! corpora `tests/oracle` replays on the kernel, the reference model and the validator's
//! invariants) is configured in
//! `.cargo/mutants.toml`.
//!
//! A mutant is killed when a test fails, times out when the tests hang (noticed too), and
//! survives when every test passes. The survivors go to [`SURVIVORS`], a checked-in list
//! where each carries the reason it survives (an equivalent mutant, say) or the issue
//! to fix; a survivor new to the list says it still needs one.

use crate::progress::Status;
use crate::{err, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The checked-in list of surviving mutants, relative to the workspace root.
pub const SURVIVORS: &str = "tests/mutants/survivors.md";
/// What a survivor new to the list says until someone gives its reason.
const NO_REASON: &str = "not yet reviewed";

/// Which mutants to run: all, one shard, those matching a regex, or (`iterate`) only
/// those a previous run did not kill.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `K/N`: the K-th of N shards.
    pub shard: Option<String>,
    /// A regex over the mutants' names.
    pub matching: Option<String>,
    /// Skip what the previous run killed.
    pub iterate: bool,
}

/// How one run came out, from cargo-mutants' lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Killed: a test failed.
    pub caught: Vec<String>,
    /// Survived: every test passed.
    pub missed: Vec<String>,
    /// The tests ran past their time: the mutant made them hang.
    pub timeout: Vec<String>,
    /// The mutant did not build.
    pub unviable: Vec<String>,
}

impl Outcome {
    /// Read cargo-mutants' output directory (`mutants.out`). Under `--iterate` the
    /// mutants an earlier run killed count as killed.
    pub fn read(dir: &Path) -> Result<Self> {
        let list = |name: &str| -> Result<Vec<String>> {
            match fs::read_to_string(dir.join(name)) {
                Ok(text) => Ok(text.lines().filter(|l| !l.is_empty()).map(String::from).collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(err!("{}: {e}", dir.join(name).display())),
            }
        };
        let mut caught = list("caught.txt")?;
        caught.extend(list("previously_caught.txt")?);
        Ok(Self {
            caught,
            missed: list("missed.txt")?,
            timeout: list("timeout.txt")?,
            unviable: list("unviable.txt")?,
        })
    }

    /// Every mutant this run looked at.
    fn examined(&self) -> impl Iterator<Item = &String> {
        self.caught.iter().chain(&self.missed).chain(&self.timeout).chain(&self.unviable)
    }

    /// Killed or hung, out of the mutants that built: the share of them the tests notice.
    pub fn score(&self) -> f64 {
        let noticed = self.caught.len() + self.timeout.len();
        let viable = noticed + self.missed.len();
        if viable == 0 {
            return 100.0;
        }
        100.0 * noticed as f64 / viable as f64
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        format!(
            "{} killed, {} missed, {} timed out, {} unviable: {:.1}% of the viable mutants \
             noticed (killed or timed out)",
            self.caught.len(),
            self.missed.len(),
            self.timeout.len(),
            self.unviable.len(),
            self.score()
        )
    }
}

/// The survivors list: each mutant's name (as cargo-mutants gives it, `file:line:col:
/// what`) and why it survives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Survivors(pub BTreeMap<String, String>);

impl Survivors {
    /// Parse the list's table rows (`| \`name\` | reason |`); other lines are prose.
    pub fn parse(text: &str) -> Self {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let Some(row) = line.strip_prefix("| `") else { continue };
            let Some((name, rest)) = row.split_once("` | ") else { continue };
            let reason = rest.trim_end().trim_end_matches('|').trim_end();
            map.insert(name.to_string(), reason.to_string());
        }
        Self(map)
    }

    /// The list after `run`: what it examined is replaced by what survived it (with the
    /// reason already given, if any); what it did not examine stays as it was.
    pub fn updated(&self, run: &Outcome) -> Self {
        let examined: std::collections::BTreeSet<&String> = run.examined().collect();
        let mut map: BTreeMap<String, String> = self
            .0
            .iter()
            .filter(|(n, _)| !examined.contains(n))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        for name in &run.missed {
            let reason = self.0.get(name).cloned().unwrap_or_else(|| NO_REASON.to_string());
            map.insert(name.clone(), reason);
        }
        Self(map)
    }

    /// Survivors still waiting for a reason.
    pub fn unreviewed(&self) -> usize {
        self.0.values().filter(|r| *r == NO_REASON).count()
    }

    /// The file's text: a header, the last run's summary, and the table.
    pub fn render(&self, summary: &str) -> String {
        let mut out = String::from(
            "# Surviving mutants\n\n\
             Written by `cargo xtask mutants` (see `.cargo/mutants.toml` for what is mutated \
             and which tests run); the reasons are written by people and kept across runs.\n\
             A survivor is a change to the kernel that every unit test and the replayed \
             fuzz corpora let through: an equivalent mutant (no behaviour changes), or a gap \
             in the tests to close (\"issue to fix\").\n\n",
        );
        out.push_str(&format!("Last run: {summary}.\n\n| mutant | why it survives |\n|---|---|\n"));
        for (name, reason) in &self.0 {
            out.push_str(&format!("| `{name}` | {reason} |\n"));
        }
        out
    }
}

/// cargo-mutants, installed from crates.io if missing.
fn ensure_cargo_mutants() -> Result<()> {
    let have = Command::new("cargo")
        .args(["mutants", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    let mut install = Command::new("cargo");
    install.args(["install", "cargo-mutants", "--locked"]);
    Status::start("installing cargo-mutants (cargo install cargo-mutants --locked)")
        .run(&mut install, "cargo-mutants-install")
        .map_err(|e| err!("installing cargo-mutants failed: {e}"))
}

/// Run the selection, print the counts, and bring the survivors list up to date.
/// `Ok(true)` when no survivor lacks a reason.
pub fn command(selection: &Selection) -> Result<bool> {
    ensure_cargo_mutants()?;
    let root = crate::root();
    let out = crate::target_dir().join("mutants");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root).args(["mutants", "--no-shuffle", "--output"]).arg(&out);
    if let Some(shard) = &selection.shard {
        cmd.args(["--shard", shard]);
    }
    if let Some(re) = &selection.matching {
        cmd.args(["--re", re]);
    }
    if selection.iterate {
        cmd.arg("--iterate");
    }
    // No debug info: each mutant rebuilds the kernel's tests, and this halves the link.
    cmd.env("CARGO_PROFILE_TEST_DEBUG", "0").env("CARGO_PROFILE_DEV_DEBUG", "0");
    // cargo-mutants exits non-zero when mutants survive or time out: the lists say how
    // it went, and a run that produced none failed.
    let status = Status::start("mutation testing (cargo mutants)").run(&mut cmd, "mutants");
    let dir = out.join("mutants.out");
    if !dir.join("caught.txt").exists() {
        return Err(err!(
            "cargo mutants produced no results ({}); its log: {}",
            status.err().map_or_else(|| "no error".to_string(), |e| e.to_string()),
            dir.join("debug.log").display()
        ));
    }
    let run = Outcome::read(&dir)?;
    let summary = run.summary();
    println!("mutants: {summary}");
    for name in &run.missed {
        println!("mutants: survived: {name}");
    }
    let path: PathBuf = root.join(SURVIVORS);
    let before = Survivors::parse(&fs::read_to_string(&path).unwrap_or_default());
    let after = before.updated(&run);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, after.render(&summary))?;
    let unreviewed = after.unreviewed();
    println!("mutants: {} survivors in {SURVIVORS}, {unreviewed} without a reason", after.0.len());
    Ok(unreviewed == 0)
}

#[cfg(test)]
mod tests {
    use super::{Outcome, Survivors, NO_REASON};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_score_counts_hangs_as_noticed_and_leaves_out_what_did_not_build() {
        let run = Outcome {
            caught: names(&["a", "b", "c", "d", "e", "f", "g", "h"]),
            missed: names(&["m"]),
            timeout: names(&["t"]),
            unviable: names(&["u", "v"]),
        };
        assert!((run.score() - 90.0).abs() < 1e-9);
        assert!(run.summary().starts_with("8 killed, 1 missed, 1 timed out, 2 unviable: 90.0%"));
    }

    #[test]
    fn reasons_survive_a_rerun_and_killed_mutants_leave_the_list() {
        let text = "# x\n\n| mutant | why it survives |\n|---|---|\n\
                    | `k.rs:1:1: replace a with b in f` | equivalent: both are zero |\n\
                    | `k.rs:2:1: replace c with d in g` | not yet reviewed |\n\
                    | `other.rs:3:1: replace e with f in h` | issue: no test sends without CALL |\n";
        let old = Survivors::parse(text);
        assert_eq!(old.0.len(), 3);
        // A run over k.rs: the first still survives, the second is killed now, a new one
        // appears; other.rs was not examined and keeps its row.
        let run = Outcome {
            caught: names(&["k.rs:2:1: replace c with d in g"]),
            missed: names(&["k.rs:1:1: replace a with b in f", "k.rs:9:1: replace x with y in z"]),
            ..Outcome::default()
        };
        let new = old.updated(&run);
        assert_eq!(
            new.0.get("k.rs:1:1: replace a with b in f").map(String::as_str),
            Some("equivalent: both are zero")
        );
        assert_eq!(
            new.0.get("k.rs:9:1: replace x with y in z").map(String::as_str),
            Some(NO_REASON)
        );
        assert!(!new.0.contains_key("k.rs:2:1: replace c with d in g"));
        assert!(new.0.contains_key("other.rs:3:1: replace e with f in h"));
        assert_eq!(new.unreviewed(), 1);
        // What it writes reads back the same.
        assert_eq!(Survivors::parse(&new.render("summary")), new);
    }
}
