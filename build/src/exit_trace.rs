//! `cargo xtask bench --exit-trace [cpuid|mmio]`: where the instructions go in one CPUID
//! (or MMIO) round trip. The default image is built with a kernel that single-steps one
//! such exit's three
//! legs (the kernel from the VM exit to the switch to the VMM, the VMM up to its
//! `ReplyRecv`, the kernel from that syscall to VM entry) and prints every instruction's
//! address; each is named by `addr2line` (binutils) with its inlined frames (the VMM's
//! from a build of the same code that keeps its debug information) and counted against
//! the innermost function of the project. Under Bochs one instruction is one tick, so the
//! counts are the legs' costs, less the entry stubs and the world switch, which are not
//! stepped.

use crate::cli::TracedExit;
use crate::emulator::{self, Emulator, RunOptions, Verdict};
use crate::{err, image, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const FEATURE: &str = "exit-trace";
const FEATURE_MMIO: &str = "exit-trace-mmio";
const PREFIX: &str = "exit-trace: ";

/// Build, run and report.
pub fn command(exit: TracedExit) -> Result<bool> {
    let (features, what) = match exit {
        TracedExit::Cpuid => ([FEATURE], "CPUID"),
        TracedExit::Mmio => ([FEATURE_MMIO], "MMIO read"),
    };
    let iso = image::build_with(image::find("default")?, &features)?;
    let kernel = crate::cargo::build_kernel(&features)?;
    let vmm = crate::cargo::build_user_symbols("vmm-server")?;
    let outcome = emulator::run(Emulator::Bochs, &iso, &RunOptions::default())?;
    if outcome.verdict != Verdict::Pass {
        eprintln!("xtask: FAIL: the traced run failed: {}", outcome.report());
        return Ok(false);
    }
    let (legs, rips) = parse(&outcome.serial)?;
    let (exit, rest) = rips.split_at(legs[0]);
    let (in_vmm, entry) = rest.split_at(legs[1]);
    let (exit, in_vmm, entry) = (name(&kernel, exit)?, name(&vmm, in_vmm)?, name(&kernel, entry)?);
    println!(
        "instructions of one {what} round trip under Bochs, by function (innermost frame of the project):"
    );
    for (leg, steps) in [
        ("kernel exit leg (VM exit to the VMM running)", exit),
        ("VMM (back in ring 3 to its ReplyRecv)", in_vmm),
        ("kernel entry leg (the VMM's ReplyRecv to VM entry)", entry),
    ] {
        println!("  {leg}: {} instructions", steps.len());
        for (function, count) in by_count(&steps) {
            println!("    {count:5}  {function}");
        }
    }
    Ok(true)
}

/// The legs' lengths and the addresses, from the kernel's report.
fn parse(serial: &str) -> Result<([usize; 3], Vec<u64>)> {
    let mut legs = None;
    let mut rips = Vec::new();
    for line in serial.lines().filter_map(|l| l.trim_end().strip_prefix(PREFIX)) {
        if let Some(rest) = line.strip_prefix("legs ") {
            let n: Vec<usize> = rest.split(' ').filter_map(|w| w.parse().ok()).collect();
            legs = <[usize; 3]>::try_from(n).ok();
        } else if let Ok(rip) = u64::from_str_radix(line, 16) {
            rips.push(rip);
        }
    }
    let legs = legs
        .ok_or_else(|| err!("the kernel printed no trace (was a CPUID exit taken 500 times?)"))?;
    if legs.iter().sum::<usize>() != rips.len() {
        return Err(err!("the trace is cut short: {} addresses for legs {legs:?}", rips.len()));
    }
    Ok((legs, rips))
}

/// The innermost function of the project at each address of `elf`.
fn name(elf: &Path, rips: &[u64]) -> Result<Vec<String>> {
    if rips.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new("addr2line")
        .args(["-a", "-f", "-i", "-C", "-e"])
        .arg(elf)
        .args(rips.iter().map(|r| format!("{r:#x}")))
        .output()
        .map_err(|e| err!("addr2line (binutils) is needed to name the addresses: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with("0x") {
            continue;
        }
        let mut chosen: Option<String> = None;
        let mut outermost = String::from("?");
        while let Some(function) = lines.next_if(|l| !l.starts_with("0x")) {
            let _location = lines.next();
            let short = simplify(function);
            if chosen.is_none() && is_project(&short) {
                chosen = Some(short.clone());
            }
            outermost = short;
        }
        names.push(chosen.unwrap_or(outermost));
    }
    Ok(names)
}

/// A demangled path without generic arguments or the hash.
fn simplify(function: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in function.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.replace("impl ", "").trim_start_matches("::").to_string()
}

/// The project's code rather than core's or a dependency's helpers (a trait method of a
/// core type loses its path with its generic arguments: `<u32 as PartialEq>::eq` is
/// `eq`).
fn is_project(function: &str) -> bool {
    function.contains("::")
        && !(function.starts_with("core::")
            || function.starts_with("spin::")
            || function.starts_with("bytemuck::")
            || function.starts_with("heapless::"))
}

fn by_count(steps: &[String]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in steps {
        *counts.entry(s).or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().map(|(f, n)| (f.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::{by_count, parse, simplify};

    #[test]
    fn reads_the_kernels_report() {
        let serial = "boot\nexit-trace: legs 1 1 1\nexit-trace: ffffffff80100000\nexit-trace: 400004\nexit-trace: ffffffff80100008\n";
        let (legs, rips) = parse(serial).unwrap();
        assert_eq!(legs, [1, 1, 1]);
        assert_eq!(rips, [0xffff_ffff_8010_0000, 0x40_0004, 0xffff_ffff_8010_0008]);
        assert!(parse("exit-trace: legs 2 2 0\nexit-trace: 10\n").is_err(), "a cut trace");
        assert!(parse("nothing\n").is_err());
    }

    #[test]
    fn names_are_shortened_and_counted() {
        assert_eq!(
            simplify("kernel::fastpath::<impl kernel::state::Kernel<S>>::fast_reply_vcpu"),
            "kernel::fastpath::::fast_reply_vcpu"
        );
        let steps: Vec<String> = ["a", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(by_count(&steps), [("a".to_string(), 2), ("b".to_string(), 1)]);
    }
}
