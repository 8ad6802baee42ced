//! `cargo xtask trace`: exit traces (`vmm_server::trace`) between serial logs, files,
//! the host replay and the fuzz corpus.
//!
//! - `record [OUT]` boots the `trace` image under Bochs (guest32 alone, its VMM printing
//!   a trace) and extracts the trace into OUT (default: the checked-in
//!   `tests/fuzz/traces/guest32.trace`).
//! - `extract LOG OUT` turns a serial log back into the trace's bytes, checking the
//!   length and checksum the end line gives.
//! - `replay FILE` replays the exits against `vmm_server::dispatch::Vm`, built as the VMM
//!   builds it for the trace's guest mode and host CPUID, and checks every reply.
//! - `seeds FILE [--every N]` cuts the trace into standalone traces of N exits as seeds
//!   for the `vmm_dispatch` fuzz target, which replays a trace input exit by exit.

use crate::cli::TraceCommand;
use crate::{err, Result};
use std::fs;
use std::path::{Path, PathBuf};
use vmm_server::devices::uart16550::SerialSink;
use vmm_server::dispatch::Vm;
use vmm_server::guest_memory::SliceMemory;
use vmm_server::trace::{self, Decoder, Encoder, Header, LINE_PREFIX};

/// Guest RAM a replay gives the dispatcher: as much as the VMM maps (2 MiB), zeroed.
const REPLAY_RAM: usize = 2 << 20;
/// Exits per seed, by default: enough for a guest's start-up, small enough to mutate.
pub const SEED_EXITS: usize = 32;

/// The checked-in trace of guest32.
pub fn guest32_trace() -> PathBuf {
    crate::root().join("tests/fuzz/traces/guest32.trace")
}

/// The guest's console output in a replay goes nowhere.
struct Discard;

impl SerialSink for Discard {
    fn write_byte(&mut self, _: u8) {}
}

/// The bytes of the first complete trace in a serial log.
pub fn extract(log: &str) -> Result<Vec<u8>> {
    let mut lines = log.lines().map(|l| l.trim_end_matches('\r'));
    lines
        .by_ref()
        .find(|l| *l == "trace: begin")
        .ok_or_else(|| err!("the log has no `trace: begin` line"))?;
    let mut bytes = Vec::new();
    for line in lines {
        let Some(rest) = line.strip_prefix(LINE_PREFIX) else { continue };
        if let Some(end) = rest.strip_prefix("end ") {
            let f: Vec<&str> = end.split_whitespace().collect();
            let [records, len, hash] = f[..] else {
                return Err(err!("malformed end line {line:?}"));
            };
            let len: usize = len.parse().map_err(|_| err!("malformed end line {line:?}"))?;
            let hash = u32::from_str_radix(hash, 16).map_err(|_| err!("bad checksum {line:?}"))?;
            if bytes.len() != len {
                return Err(err!(
                    "the log holds {} trace bytes, the end line says {len} (lines lost?)",
                    bytes.len()
                ));
            }
            let got = bytes.iter().fold(trace::FNV_START, |h, b| trace::fnv1a(h, *b));
            if got != hash {
                return Err(err!(
                    "trace checksum {got:08x}, the end line says {hash:08x} (a line garbled?)"
                ));
            }
            let (_, d) = Decoder::new(&bytes).map_err(|e| err!("{e}"))?;
            let decoded = d.count();
            if records != decoded.to_string() {
                return Err(err!("the end line says {records} exits, the bytes hold {decoded}"));
            }
            return Ok(bytes);
        }
        let mut buf = [0u8; 64];
        let n = trace::base64_decode(rest.as_bytes(), &mut buf)
            .ok_or_else(|| err!("not base64: {line:?}"))?;
        bytes.extend_from_slice(&buf[..n]);
    }
    Err(err!("the trace has no end line (the run stopped while it was printed?)"))
}

/// Replay a trace; returns the number of exits whose replies matched.
pub fn replay(bytes: &[u8]) -> Result<usize> {
    let (header, decoder) = Decoder::new(bytes).map_err(|e| err!("{e}"))?;
    let mut ram = vec![0u8; REPLAY_RAM];
    let config = vmm_server::serve::config(u64::from(header.mode));
    let host = |leaf, subleaf| header.host_cpuid(leaf, subleaf);
    let mut vm = Vm::new(&config, host, SliceMemory::new(0, &mut ram), Discard)
        .map_err(|e| err!("cannot build the VM: {e:?}"))?;
    trace::replay(&mut vm, decoder).map_err(|e| err!("{e}"))
}

/// Standalone traces of `every` exits each, the header repeated in each.
pub fn seeds(bytes: &[u8], every: usize) -> Result<Vec<Vec<u8>>> {
    let (header, decoder) = Decoder::new(bytes).map_err(|e| err!("{e}"))?;
    let records: Vec<trace::Record> = decoder.collect::<Result<_, _>>().map_err(|e| err!("{e}"))?;
    let mut out = Vec::new();
    for chunk in records.chunks(every.max(1)) {
        out.push(encode(&header, chunk)?);
    }
    Ok(out)
}

/// Encode `records` as a trace (for seeds: each starts its own delta chain).
pub fn encode(header: &Header, records: &[trace::Record]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    header.encode(&mut |b| bytes.push(b));
    let mut e = Encoder::new();
    for r in records {
        let reply = r.reply().map_err(|e| err!("a recorded reply does not decode: {e}"))?;
        e.record(&r.exit, &reply, &mut |b| bytes.push(b));
    }
    Ok(bytes)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| err!("{}: {e}", path.display()))
}

fn record(out: &Path) -> Result<bool> {
    use crate::emulator::{self, Emulator, RunOptions};
    let iso = crate::image::build(crate::image::find("trace")?)?;
    println!("xtask: booting the trace image under Bochs");
    let outcome = emulator::run(Emulator::Bochs, &iso, &RunOptions::default())?;
    let bytes =
        extract(&outcome.serial).map_err(|e| err!("{e}; logs in {}", outcome.dir.display()))?;
    let n = replay(&bytes)?;
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(out, &bytes)?;
    println!("xtask: {} exits ({} bytes) in {}; the replay matches", n, bytes.len(), out.display());
    Ok(true)
}

/// `cargo xtask trace ...`.
pub fn command(command: TraceCommand) -> Result<bool> {
    match command {
        TraceCommand::Record { out } => record(&out.unwrap_or_else(guest32_trace)),
        TraceCommand::Extract { log, out } => {
            let text = fs::read(&log).map_err(|e| err!("{}: {e}", log.display()))?;
            let bytes = extract(&String::from_utf8_lossy(&text))?;
            fs::write(&out, &bytes)?;
            let (_, d) = Decoder::new(&bytes).map_err(|e| err!("{e}"))?;
            println!("xtask: {} exits, {} bytes -> {}", d.count(), bytes.len(), out.display());
            Ok(true)
        }
        TraceCommand::Replay { file } => match replay(&read(&file)?) {
            Ok(n) => {
                println!("xtask: {n} exits replayed; every reply equals the recorded one");
                Ok(true)
            }
            Err(e) => {
                eprintln!("xtask: FAIL: the replay of {} differs: {e}", file.display());
                Ok(false)
            }
        },
        TraceCommand::Seeds { file, every } => {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("trace").to_string();
            let dir = crate::fuzz::fuzz_dir().join("corpus").join("vmm_dispatch");
            fs::create_dir_all(&dir)?;
            let seeds = seeds(&read(&file)?, every)?;
            for (i, s) in seeds.iter().enumerate() {
                fs::write(dir.join(format!("trace-{stem}-{i:02}")), s)?;
            }
            println!("xtask: {} seeds of {every} exits in {}", seeds.len(), dir.display());
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{extract, guest32_trace, replay, seeds};
    use vmm_server::trace::{Decoder, LineWriter};

    /// A log holding `bytes` as the VMM prints a trace, between other lines.
    fn log_of(bytes: &[u8], records: u64) -> String {
        let mut lines = vec!["init: hello".to_string(), "guest32: hello".to_string()];
        let mut w = LineWriter::new(|l: &str| lines.push(l.to_string()));
        for b in bytes {
            w.push(*b);
        }
        let mut end = String::new();
        w.finish(records, |r, n, h| end = format!("trace: end {r} {n} {h:08x}"));
        lines.push("vmm: VM stopped".into());
        lines.push(end);
        lines.join("\r\n")
    }

    #[test]
    fn the_checked_in_guest32_trace_replays_exactly() {
        let bytes = std::fs::read(guest32_trace()).expect("tests/fuzz/traces/guest32.trace");
        let n = replay(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 100, "only {n} exits");
    }

    #[test]
    fn a_log_gives_back_the_exact_bytes_and_damage_is_caught() {
        let bytes = std::fs::read(guest32_trace()).unwrap();
        let records = Decoder::new(&bytes).unwrap().1.count() as u64;
        let log = log_of(&bytes, records);
        assert_eq!(extract(&log).unwrap(), bytes);
        // A lost line, a garbled one, a wrong count, no end line.
        let lines: Vec<&str> = log.lines().collect();
        let data = lines.iter().position(|l| l.starts_with("trace: ") && *l != "trace: begin");
        let third = data.unwrap() + 2;
        let lost: Vec<&str> =
            lines.iter().enumerate().filter(|(i, _)| *i != third).map(|(_, l)| *l).collect();
        assert!(extract(&lost.join("\n")).unwrap_err().to_string().contains("lines lost"));
        let mut garbled: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let c = if garbled[third].ends_with('A') { "B" } else { "A" };
        let last = garbled[third].len() - 1;
        garbled[third].replace_range(last.., c);
        assert!(extract(&garbled.join("\n")).unwrap_err().to_string().contains("checksum"));
        assert!(extract(&log_of(&bytes, records + 1)).unwrap_err().to_string().contains("exits"));
        let cut = &log[..log.find("trace: end").unwrap()];
        assert!(extract(cut).unwrap_err().to_string().contains("no end line"));
        assert!(extract("nothing here").is_err());
    }

    #[test]
    fn seeds_are_standalone_traces_that_replay_from_the_start() {
        let bytes = std::fs::read(guest32_trace()).unwrap();
        let total = Decoder::new(&bytes).unwrap().1.count();
        let s = seeds(&bytes, 32).unwrap();
        assert_eq!(s.len(), total.div_ceil(32));
        let counted: usize = s.iter().map(|b| Decoder::new(b).unwrap().1.count()).sum();
        assert_eq!(counted, total);
        // The first seed starts where the VM starts, so it replays exactly too.
        assert_eq!(replay(&s[0]).unwrap(), 32);
    }
}
