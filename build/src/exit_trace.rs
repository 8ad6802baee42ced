//! `cargo xtask bench --exit-trace`: where the kernel's instructions go in one CPUID
//! round trip. The default image is built with a kernel that single-steps its exit leg
//! (VM exit to the switch to the VMM) and its entry leg (the VMM's `ReplyRecv` to VM
//! entry) of one CPUID exit and prints every instruction's address; each address is
//! named by `addr2line` (binutils) with its inlined frames and counted against the
//! innermost kernel function. Under Bochs one instruction is one tick, so the counts are
//! the legs' costs, less the entry stubs and the world switch, which are not stepped.

use crate::emulator::{self, Emulator, RunOptions, Verdict};
use crate::{err, image, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const FEATURE: &str = "exit-trace";
const PREFIX: &str = "exit-trace: ";

/// Build, run and report.
pub fn command() -> Result<bool> {
    let iso = image::build_with(image::find("default")?, &[FEATURE])?;
    let kernel = crate::cargo::build_kernel(&[FEATURE])?;
    let outcome = emulator::run(Emulator::Bochs, &iso, &RunOptions::default())?;
    if outcome.verdict != Verdict::Pass {
        eprintln!("xtask: FAIL: the traced run failed: {}", outcome.report());
        return Ok(false);
    }
    let (legs, rips) = parse(&outcome.serial)?;
    let names = name(&kernel, &rips)?;
    let (exit, entry) = names.split_at(legs.0.min(names.len()));
    println!("kernel instructions of one CPUID round trip under Bochs, by function (innermost kernel frame):");
    for (leg, steps) in [
        ("exit leg (VM exit to the VMM running)", exit),
        ("entry leg (the VMM's ReplyRecv to VM entry)", entry),
    ] {
        println!("  {leg}: {} instructions", steps.len());
        for (function, count) in by_count(steps) {
            println!("    {count:5}  {function}");
        }
    }
    Ok(true)
}

/// The legs' lengths and the addresses, from the kernel's report.
fn parse(serial: &str) -> Result<((usize, usize), Vec<u64>)> {
    let mut legs = None;
    let mut rips = Vec::new();
    for line in serial.lines().filter_map(|l| l.trim_end().strip_prefix(PREFIX)) {
        if let Some(rest) = line.strip_prefix("legs ") {
            let mut n = rest.split(' ').filter_map(|w| w.parse::<usize>().ok());
            legs = n.next().zip(n.next());
        } else if let Ok(rip) = u64::from_str_radix(line, 16) {
            rips.push(rip);
        }
    }
    let legs = legs
        .ok_or_else(|| err!("the kernel printed no trace (was a CPUID exit taken 500 times?)"))?;
    if legs.0 + legs.1 != rips.len() {
        return Err(err!("the trace is cut short: {} addresses for legs {legs:?}", rips.len()));
    }
    Ok((legs, rips))
}

/// The innermost kernel function of each address.
fn name(kernel: &Path, rips: &[u64]) -> Result<Vec<String>> {
    let out = Command::new("addr2line")
        .args(["-a", "-f", "-i", "-C", "-e"])
        .arg(kernel)
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
            if chosen.is_none() && is_kernel(&short) {
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

/// Kernel code rather than core's or a dependency's helpers (a trait method of a core
/// type loses its path with its generic arguments: `<u32 as PartialEq>::eq` is `eq`).
fn is_kernel(function: &str) -> bool {
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
        let serial = "boot\nexit-trace: legs 2 1\nexit-trace: ffffffff80100000\nexit-trace: ffffffff80100004\nexit-trace: ffffffff80100008\n";
        let (legs, rips) = parse(serial).unwrap();
        assert_eq!(legs, (2, 1));
        assert_eq!(rips, [0xffff_ffff_8010_0000, 0xffff_ffff_8010_0004, 0xffff_ffff_8010_0008]);
        assert!(parse("exit-trace: legs 2 2\nexit-trace: 10\n").is_err(), "a cut trace");
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
