//! QEMU's monitor on a Unix socket, for the one thing a run sends through it: NMIs to
//! every CPU from the moment the guest reaches a given point
//! ([`crate::emulator::RunOptions::nmis_after`]). The kernel must take them as nobody's
//! fault, in ring 3, in the kernel, and between `syscall` and its `swapgs`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often an NMI goes once the point is reached.
const PERIOD: Duration = Duration::from_millis(50);
/// How often the serial console is read for the point until then.
const POLL: Duration = Duration::from_millis(10);
/// How long the monitor may take to answer a command.
const ANSWER: Duration = Duration::from_millis(500);

/// A thread that sends NMIs until stopped.
pub struct NmiSender {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u32>,
}

impl NmiSender {
    /// Once `serial` holds `marker`, send `nmi` to the monitor at `socket` every
    /// [`PERIOD`].
    pub fn start(socket: PathBuf, serial: PathBuf, marker: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let thread = thread::spawn(move || {
            let mut sent = 0;
            let mut reached = false;
            while !done.load(Ordering::Acquire) {
                reached = reached || std::fs::read(&serial).is_ok_and(|s| holds(&s, &marker));
                if reached && nmi(&socket).is_ok() {
                    sent += 1;
                }
                thread::sleep(if reached { PERIOD } else { POLL });
            }
            sent
        });
        Self { stop, thread }
    }

    /// Stop sending; how many NMIs went.
    pub fn stop(self) -> u32 {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or(0)
    }
}

fn holds(text: &[u8], marker: &str) -> bool {
    let m = marker.as_bytes();
    !m.is_empty() && text.windows(m.len()).any(|w| w == m)
}

/// One `nmi` command, answered: the monitor greets with a prompt and prompts again once
/// the command is done.
fn nmi(socket: &Path) -> std::io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(ANSWER))?;
    s.write_all(b"nmi\n")?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while seen.windows(6).filter(|w| w == b"(qemu)").count() < 2 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::holds;

    #[test]
    fn the_marker_is_found_anywhere_and_an_empty_one_never() {
        assert!(holds(b"kernel: boot\ninit: started\n", "init:"));
        assert!(!holds(b"kernel: boot\n", "init:"));
        assert!(!holds(b"anything", ""));
    }
}
