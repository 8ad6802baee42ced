//! What every emulator run shares: a run directory, a watchdog that SIGKILLs at the
//! timeout, the serial log (optionally streamed to the terminal), and a verdict that is
//! `Pass` only for the emulator's explicit success status.

use crate::{err, Result};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Which emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            stream: false,
            gdb: false,
            bochs_cpu: "corei7_skylake_x".into(),
            memory_mib: 256,
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

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How it ended.
    pub verdict: Verdict,
    /// Everything the guest wrote to COM1.
    pub serial: String,
    /// The emulator's own log (Bochs's log file), for diagnostics.
    pub emulator_log: String,
    /// Where the logs are kept.
    pub dir: PathBuf,
}

impl Outcome {
    /// A report for a failed assertion: the verdict, the serial log, and the emulator's
    /// error lines.
    pub fn report(&self) -> String {
        let errors: Vec<&str> = self
            .emulator_log
            .lines()
            .filter(|l| {
                l.contains("e[")
                    || l.contains("p[")
                    || l.contains("VMFAIL")
                    || l.contains("VMENTER")
            })
            .collect();
        format!(
            "verdict {:?} (logs in {})\n--- serial ---\n{}\n--- emulator errors ---\n{}",
            self.verdict,
            self.dir.display(),
            self.serial,
            errors.join("\n")
        )
    }
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

/// Follow a growing file and copy new bytes to stdout until `done` is set.
fn follow(path: PathBuf, done: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut offset = 0usize;
        loop {
            let finished = done.load(Ordering::Acquire);
            if let Ok(bytes) = fs::read(&path) {
                if let Some(new) = bytes.get(offset..) {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(new);
                    let _ = out.flush();
                    offset = bytes.len();
                }
            }
            if finished {
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
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
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

/// Run an image under an emulator.
pub fn run(emulator: Emulator, iso: &Path, opts: &RunOptions) -> Result<Outcome> {
    match emulator {
        Emulator::Qemu => crate::qemu::run(iso, opts),
        Emulator::Bochs => crate::bochs::run(iso, opts),
    }
}
