//! One-line progress for the long steps (installs, builds, boots, fuzz campaigns): what is
//! happening, its latest detail and the time spent, redrawn in place on a terminal; on
//! anything else (a CI log) a line when the step starts and ends, and for the steps that
//! ask for it a detail line every few seconds, so a log never fills with redraws.
//!
//! It is off unless the command line turns it on ([`enable`]): the integration tests use
//! the same library and keep the tools' own output, as before. A step's command output
//! goes to a log file under `target/logs/` and is shown only when the step fails.

use crate::{err, Result};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The line on screen, so output printed while it is shown goes above it.
static SHOWN: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

/// Turn progress lines on (the command line does; library users keep plain output).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether progress lines are on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn terminal() -> bool {
    std::io::stderr().is_terminal()
}

struct Shared {
    what: String,
    detail: Mutex<String>,
    started: Instant,
    done: AtomicBool,
}

impl Shared {
    fn line(&self, tick: usize) -> String {
        const SPIN: [char; 4] = ['|', '/', '-', '\\'];
        let width: usize =
            std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100);
        let detail = self.detail.lock().map(|d| d.clone()).unwrap_or_default();
        let elapsed = self.started.elapsed().as_secs();
        let mut line = format!("{} {} [{elapsed} s]", SPIN[tick % SPIN.len()], self.what);
        if !detail.is_empty() {
            line.push_str(": ");
            line.push_str(&detail);
        }
        line.chars().take(width.saturating_sub(1)).collect()
    }
}

/// A step under way.
pub struct Status {
    shared: Option<Arc<Shared>>,
    drawer: Option<thread::JoinHandle<()>>,
}

impl Status {
    /// Start showing `what`.
    pub fn start(what: impl Into<String>) -> Self {
        Self::start_with(what, None)
    }

    /// Start showing `what`; when not on a terminal, print the detail every `every`.
    pub fn start_with(what: impl Into<String>, every: Option<Duration>) -> Self {
        if !enabled() {
            return Self { shared: None, drawer: None };
        }
        let shared = Arc::new(Shared {
            what: what.into(),
            detail: Mutex::new(String::new()),
            started: Instant::now(),
            done: AtomicBool::new(false),
        });
        let drawer = if terminal() {
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = Some(shared.clone());
            }
            let s = shared.clone();
            Some(thread::spawn(move || {
                let mut tick = 0;
                while !s.done.load(Ordering::Acquire) {
                    if let Ok(_shown) = SHOWN.lock() {
                        eprint!("\r\x1b[K{}", s.line(tick));
                    }
                    tick += 1;
                    thread::sleep(Duration::from_millis(200));
                }
            }))
        } else {
            eprintln!("xtask: {} ...", shared.what);
            every.map(|every| {
                let s = shared.clone();
                thread::spawn(move || {
                    let mut last = Instant::now();
                    while !s.done.load(Ordering::Acquire) {
                        thread::sleep(Duration::from_millis(200));
                        if last.elapsed() >= every {
                            last = Instant::now();
                            let detail = s.detail.lock().map(|d| d.clone()).unwrap_or_default();
                            let secs = s.started.elapsed().as_secs();
                            eprintln!("xtask: {} [{secs} s]: {detail}", s.what);
                        }
                    }
                })
            })
        };
        Self { shared: Some(shared), drawer }
    }

    /// Set the detail shown after what the step is.
    pub fn detail(&self, detail: &str) {
        if let Some(s) = &self.shared {
            if let Ok(mut d) = s.detail.lock() {
                detail.trim().clone_into(&mut d);
            }
        }
    }

    /// How long the step has run.
    pub fn elapsed(&self) -> Duration {
        self.shared.as_ref().map_or(Duration::ZERO, |s| s.started.elapsed())
    }

    fn stop(&mut self) {
        if let Some(s) = &self.shared {
            s.done.store(true, Ordering::Release);
        }
        if let Some(d) = self.drawer.take() {
            // A drawer that panicked only lost its redraws.
            let _ = d.join();
        }
        if let Ok(mut shown) = SHOWN.lock() {
            if shown.take().is_some() {
                eprint!("\r\x1b[K");
            }
        }
    }

    /// End the step with a closing line: `xtask: WHAT: WORDS (N s)`.
    pub fn finish(mut self, words: &str) {
        self.stop();
        if let Some(s) = self.shared.take() {
            eprintln!("xtask: {}: {words} ({} s)", s.what, s.started.elapsed().as_secs());
        }
    }

    /// Run `cmd` as this step: its output goes to `target/logs/LOG.log`, its latest line
    /// is the detail, and when it fails the end of the log is shown. Without progress
    /// lines the command's output goes to the terminal as it comes.
    pub fn run(self, cmd: &mut Command, log: &str) -> Result<()> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        if self.shared.is_none() {
            let status = cmd.status().map_err(|e| err!("cannot start {program}: {e}"))?;
            return if status.success() {
                Ok(())
            } else {
                Err(err!("{program} failed ({status})"))
            };
        }
        let dir = crate::target_dir().join("logs");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{log}.log"));
        let file = Arc::new(Mutex::new(File::create(&path)?));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err!("cannot start {program}: {e}"))?;
        let shared = self.shared.clone();
        let readers: Vec<_> = [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
            child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|r| copy_lines(r, file.clone(), shared.clone()))
        .collect();
        let status = child.wait()?;
        for r in readers {
            // A reader that panicked only lost log lines.
            let _ = r.join();
        }
        if status.success() {
            // On a terminal a step that took no time leaves no line behind (a build with
            // nothing to rebuild); in a log every step shows.
            if terminal() && self.elapsed() < Duration::from_secs(1) {
                drop(self);
            } else {
                self.finish("done");
            }
            Ok(())
        } else {
            self.finish("FAILED");
            show_tail(&path);
            Err(err!("{program} failed ({status}); its full output is in {}", path.display()))
        }
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        self.stop();
    }
}

fn copy_lines(
    reader: Box<dyn Read + Send>,
    log: Arc<Mutex<File>>,
    shared: Option<Arc<Shared>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if let Ok(mut f) = log.lock() {
                // The log is a copy for the person reading it later; losing it must not
                // stop the step.
                let _ = f.write_all(&line);
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if let (Some(s), false) = (&shared, text.is_empty()) {
                if let Ok(mut d) = s.detail.lock() {
                    text.clone_into(&mut d);
                }
            }
            line.clear();
        }
    })
}

/// Print the end of a failed step's log: where its errors are.
fn show_tail(path: &PathBuf) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(60);
    eprintln!("---- the end of {} ----", path.display());
    for l in lines.get(from..).unwrap_or_default() {
        eprintln!("{l}");
    }
}

/// Print `text` on stdout above the progress line, if one is shown.
pub fn print_above(text: &str) {
    let shown = SHOWN.lock();
    let drawn = shown.as_ref().is_ok_and(|s| s.is_some());
    if drawn {
        eprint!("\r\x1b[K");
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout only loses console output; the run goes on and its log is kept.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
