//! What every emulator run shares: a run directory, a watchdog that SIGKILLs at the
//! timeout, the serial log (optionally streamed to the terminal), and a verdict that is
//! `Pass` only for the emulator's explicit success status.

use crate::{err, Result};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Which emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emulator {
    /// QEMU with TCG: fast, no VMX.
    Qemu,
    /// Bochs: slower, emulates VMX.
    Bochs,
}

impl Emulator {
    /// Parse `qemu` / `bochs`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "qemu" => Ok(Self::Qemu),
            "bochs" => Ok(Self::Bochs),
            other => Err(err!("unknown emulator {other:?}; use qemu or bochs")),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Bochs => "bochs",
        }
    }
}

/// The machine's firmware, which decides which of the hybrid ISO's boot paths GRUB takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Firmware {
    /// A PC BIOS: GRUB's El Torito image (QEMU's SeaBIOS, Bochs's BIOS).
    #[default]
    Bios,
    /// UEFI: GRUB's EFI application from the ISO's EFI system partition (OVMF; QEMU only).
    Uefi,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Kill the emulator after this long.
    pub timeout: Duration,
    /// Copy the serial console to stdout as it arrives.
    pub stream: bool,
    /// Start QEMU's gdb stub and wait for a debugger.
    pub gdb: bool,
    /// Bochs CPU model.
    pub bochs_cpu: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// The firmware that boots the ISO.
    pub firmware: Firmware,
    /// The machine's CPUs.
    pub cpus: u8,
    /// Keep the folders of this many runs per image under `target/runs/`, removing older
    /// ones; `None` keeps all.
    pub keep_runs: Option<usize>,
    /// What to type on the guest's serial console (Bochs only).
    pub serial_input: crate::serial_input::SerialInput,
    /// Let Bochs answer an MSR its CPU model lacks (reads 0, writes ignored) instead of
    /// raising #GP, as firmware-facing code on real machines expects (Bochs only).
    pub ignore_bad_msrs: bool,
    /// Commands for Bochs's debugger at start (the default continues, then quits at the
    /// kernel's magic breakpoint); its answers land in the run's `stdout.txt`.
    pub bochs_debugger: Option<String>,
    /// From the moment the serial console shows this text, send an NMI to every CPU every
    /// 50 ms until the run ends, through QEMU's monitor (QEMU only); how many went is in
    /// the run folder's `nmis.txt`.
    pub nmis_after: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            stream: false,
            gdb: false,
            bochs_cpu: crate::cli::DEFAULT_BOCHS_CPU.into(),
            memory_mib: 256,
            firmware: Firmware::Bios,
            cpus: 1,
            keep_runs: Some(crate::cli::DEFAULT_KEEP),
            serial_input: crate::serial_input::SerialInput::None,
            ignore_bad_msrs: false,
            bochs_debugger: None,
            nmis_after: None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The emulator's explicit success status.
    Pass,
    /// Any other exit; the code if there was one.
    Fail(Option<i32>),
    /// Killed at the timeout.
    TimedOut,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pass => f.write_str("the machine reported a pass"),
            Self::Fail(Some(code)) => {
                write!(f, "the emulator exited with status {code}, not its pass status")
            }
            Self::Fail(None) => f.write_str("the emulator ended without an exit status"),
            Self::TimedOut => f.write_str("no verdict before the timeout; the emulator was killed"),
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How it ended.
    pub verdict: Verdict,
    /// Everything the guest wrote to COM1.
    pub serial: String,
    /// The emulator's own log (Bochs's log file; QEMU's stderr), for diagnostics.
    pub emulator_log: String,
    /// What the emulator wrote to stderr.
    pub stderr: String,
    /// Where the logs are kept.
    pub dir: PathBuf,
}

impl Outcome {
    /// The emulator's own error lines, in its words without its log prefixes: QEMU's
    /// stderr, Bochs's errors and panics (from its stderr and its log).
    pub fn emulator_errors(&self) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for text in [&self.stderr, &self.emulator_log] {
            // Bochs's lines carry a level; its other output to the terminal (the banner,
            // the screen it connected to, sound-library chatter) is no error.
            let leveled = text.lines().any(|l| bochs_level(l).is_some());
            for line in text.lines() {
                let words = if leveled { bochs_error(line) } else { plain_error(line) };
                if let Some(words) = words.filter(|w| !lines.contains(w)) {
                    lines.push(words);
                }
            }
        }
        lines
    }

    /// A report for a failed assertion: the verdict, the serial log, and the emulator's
    /// error lines.
    pub fn report(&self) -> String {
        format!(
            "{} (logs in {})\n--- serial ---\n{}\n--- emulator errors ---\n{}",
            self.verdict,
            self.dir.display(),
            self.serial,
            self.emulator_errors().join("\n")
        )
    }
}

/// The level of a Bochs log line (`00000000000e[CPU0  ] ...`: `e` error, `p` panic, `i`
/// information, `d` debug), and the rest of the line after it.
fn bochs_level(line: &str) -> Option<(char, &str)> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    let rest = line.get(digits..)?;
    let level = rest.chars().next()?;
    (digits > 0 && rest.get(1..2) == Some("[")).then(|| (level, rest.get(1..).unwrap_or("")))
}

/// A Bochs error or panic line as words, without its prefixes.
fn bochs_error(line: &str) -> Option<String> {
    let (level, rest) = bochs_level(line.trim())?;
    // Bochs's own plumbing complaining that no GUI listens: never the cause.
    if !matches!(level, 'e' | 'p') || rest.contains("bxevent_callback") {
        return None;
    }
    let words = rest.split_once("] ").map_or(rest, |(_, w)| w).trim();
    Some(words.trim_start_matches(">>PANIC<< ").to_string())
}

/// A line of an emulator that writes only errors and warnings to stderr (QEMU).
fn plain_error(line: &str) -> Option<String> {
    let line = line.trim();
    (!line.is_empty()).then(|| line.to_string())
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory for one run's files.
pub fn run_dir(image: &Path, emulator: Emulator) -> Result<PathBuf> {
    let stem = image.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = crate::target_dir().join("runs").join(format!(
        "{stem}-{}-{}-{n}",
        emulator.name(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Remove all but the newest `keep` run folders of `image` (under either emulator).
pub fn prune_runs(image: &Path, keep: usize) -> Result<()> {
    let stem = image.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let Ok(entries) = fs::read_dir(crate::target_dir().join("runs")) else { return Ok(()) };
    let mut runs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| is_run_of(&e.file_name().to_string_lossy(), stem))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, dir) in runs.into_iter().skip(keep) {
        // Another run may be removing the same folder; what is left is removed next time.
        let _ = fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Whether a folder under `target/runs/` is a run of image `stem`: `STEM-EMULATOR-PID-N`
/// (so `default` does not claim the runs of an image whose name only starts with it).
fn is_run_of(folder: &str, stem: &str) -> bool {
    let Some(rest) = folder.strip_prefix(stem).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let mut parts = rest.split('-');
    matches!(parts.next(), Some("qemu" | "bochs"))
        && parts.by_ref().take(2).filter(|p| p.parse::<u64>().is_ok()).count() == 2
        && parts.next().is_none()
}

/// Kills the child if the run is abandoned (a panic in a test), so no emulator outlives it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Follow a growing file and copy new bytes to stdout until `done` is set: whole lines
/// while the run goes on (so they go above a progress line), the rest at the end.
fn follow(path: PathBuf, done: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut offset = 0usize;
        let mut pending = Vec::new();
        let mut ended_line = true;
        loop {
            let finished = done.load(Ordering::Acquire);
            if let Ok(bytes) = fs::read(&path) {
                if let Some(new) = bytes.get(offset..) {
                    pending.extend_from_slice(new);
                    offset = bytes.len();
                }
            }
            let cut = if finished {
                pending.len()
            } else {
                pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            };
            if cut > 0 {
                let text: Vec<u8> = pending.drain(..cut).collect();
                crate::progress::print_above(&String::from_utf8_lossy(&text));
                ended_line = text.last() == Some(&b'\n');
            }
            if finished {
                // What the tool prints next starts on a line of its own.
                if !ended_line {
                    crate::progress::print_above("\n");
                }
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Spawn `cmd`, wait for it with the timeout, and collect the outcome. `exit_map` turns
/// the exit status into a verdict; `on_stderr` sees the emulator's stderr as it comes.
pub fn supervise(
    mut cmd: Command,
    dir: &Path,
    serial: &Path,
    opts: &RunOptions,
    exit_map: fn(ExitStatus) -> Verdict,
    on_stderr: impl FnMut(&str) + Send + 'static,
) -> Result<(Verdict, String)> {
    fs::write(serial, b"")?;
    // Standard output is the emulator's own chatter (Bochs's debugger); kept for whoever
    // asked the debugger something.
    let stdout = fs::File::create(dir.join("stdout.txt"))?;
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
    let program = format!("{:?}", cmd.get_program());
    let mut child = KillOnDrop(cmd.spawn().map_err(|e| err!("cannot start {program}: {e}"))?);
    let stderr = child.0.stderr.take();
    let err_log = dir.join("stderr.txt");
    let stderr_thread = thread::spawn(move || {
        let mut all = String::new();
        let mut on_stderr = on_stderr;
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
                on_stderr(&chunk);
                all.push_str(&chunk);
            }
        }
        let _ = fs::write(err_log, &all);
        all
    });
    let done = Arc::new(AtomicBool::new(false));
    let streamer = opts.stream.then(|| follow(serial.to_path_buf(), done.clone()));

    let deadline = Instant::now() + opts.timeout;
    let verdict = loop {
        if let Some(status) = child.0.try_wait()? {
            break exit_map(status);
        }
        if Instant::now() >= deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            break Verdict::TimedOut;
        }
        thread::sleep(Duration::from_millis(20));
    };
    done.store(true, Ordering::Release);
    if let Some(s) = streamer {
        let _ = s.join();
    }
    let stderr_text = stderr_thread.join().unwrap_or_default();
    Ok((verdict, stderr_text))
}

/// Run an image under an emulator (installing the emulator first if it is missing and
/// this user may).
pub fn run(emulator: Emulator, iso: &Path, opts: &RunOptions) -> Result<Outcome> {
    use crate::deps::Need;
    let needs: &[Need] = match (emulator, opts.firmware) {
        (Emulator::Qemu, Firmware::Bios) => &[Need::Qemu],
        (Emulator::Qemu, Firmware::Uefi) => &[Need::Qemu, Need::Ovmf],
        (Emulator::Bochs, Firmware::Bios) => &[Need::Bochs],
        (Emulator::Bochs, Firmware::Uefi) => {
            return Err(err!("Bochs boots through its BIOS only; boot UEFI under QEMU"))
        }
    };
    crate::deps::ensure(needs)?;
    let stem = iso.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let status = crate::progress::Status::start(format!(
        "booting {stem} under {} (timeout {})",
        emulator.name(),
        crate::cli::show_duration(opts.timeout)
    ));
    let outcome = match emulator {
        Emulator::Qemu => crate::qemu::run(iso, opts),
        Emulator::Bochs => crate::bochs::run(iso, opts),
    }?;
    status.finish(match outcome.verdict {
        Verdict::Pass => "the machine reported a pass",
        Verdict::Fail(_) => "the emulator exited",
        Verdict::TimedOut => "timed out",
    });
    if let Some(keep) = opts.keep_runs {
        prune_runs(iso, keep)?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::{is_run_of, Outcome, Verdict};

    #[test]
    fn run_folders_are_told_apart_by_image() {
        assert!(is_run_of("default-qemu-123-0", "default"));
        assert!(is_run_of("bad-init-machine-bochs-9-12", "bad-init-machine"));
        assert!(!is_run_of("default-qemu-123-0", "bad-init-machine"));
        assert!(!is_run_of("bad-init-machine-bochs-9-12", "bad"));
        assert!(!is_run_of("defaults-qemu-1-0", "default"));
    }

    #[test]
    fn emulator_errors_are_shown_in_their_words() {
        let stderr = "00000000000i[      ] reading configuration from rc\n\
                      00000000000e[      ] rc:3: wrong value for parameter 'model'\n\
                      00000000000p[      ] >>PANIC<< rc:3: cpu directive malformed.\n\
                      00000000000e[SIM   ] notify called, but no bxevent_callback function\n\
                      ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM default\n\
                      Bochs connected to screen \"/dev/pts/0\"\n\
                      ========================================================================\n\
                      Bochs is exiting with the following message:\n\
                      [      ] rc:3: cpu directive malformed.\n";
        let out = Outcome {
            verdict: Verdict::Fail(Some(1)),
            serial: String::new(),
            emulator_log: String::new(),
            stderr: stderr.into(),
            dir: Default::default(),
        };
        assert_eq!(
            out.emulator_errors(),
            ["rc:3: wrong value for parameter 'model'", "rc:3: cpu directive malformed."]
        );
        assert!(out.report().starts_with("the emulator exited with status 1"));
        let qemu = "qemu-system-x86_64: -cpu nope: unable to find CPU model 'nope'\n";
        let out = Outcome { stderr: qemu.into(), emulator_log: qemu.into(), ..out };
        assert_eq!(out.emulator_errors(), [qemu.trim()]);
    }
}
