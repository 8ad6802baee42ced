//! Typing on a guest's serial console. Bochs's COM1 becomes a TCP server the bridge
//! connects to: what the guest sends is appended to the run's serial log (so everything
//! that reads the log works as with a file), and what [`SerialInput`] says is typed back:
//! the host terminal's lines for an interactive session, or a scripted conversation for
//! a test.

use std::fs::OpenOptions;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a run types on the guest's serial console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SerialInput {
    /// Nothing: the console is output only (a log file).
    #[default]
    None,
    /// The host terminal's standard input, line by line.
    Stdin,
    /// A conversation, step by step.
    Script(Vec<Step>),
}

/// One step of a scripted conversation: once the output since the previous step shows
/// `after`, type `send`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Text to wait for.
    pub after: String,
    /// Bytes to type then.
    pub send: String,
}

impl Step {
    /// Wait for `after`, then type `send`.
    pub fn new(after: &str, send: &str) -> Self {
        Self { after: after.into(), send: send.into() }
    }
}

/// A free TCP port on the loopback interface for the emulator's serial server.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// How long the bridge waits for the emulator to listen.
const CONNECT_FOR: Duration = Duration::from_secs(60);

/// Connect to the emulator's serial server on `port` once it listens, append what the
/// guest sends to `log`, and type `input`, until `done`.
pub fn bridge(
    port: u16,
    log: PathBuf,
    input: SerialInput,
    done: Arc<AtomicBool>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let start = Instant::now();
        let stream = loop {
            if done.load(Ordering::Acquire) || start.elapsed() > CONNECT_FOR {
                return;
            }
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
        if input == SerialInput::Stdin {
            if let Ok(writer) = stream.try_clone() {
                type_stdin(writer);
            }
        }
        let steps = match input {
            SerialInput::Script(steps) => steps,
            _ => Vec::new(),
        };
        relay(stream, &log, &steps, &done);
    })
}

/// Copy the guest's output to `log`, typing each step's text once its cue shows.
fn relay(mut stream: TcpStream, log: &std::path::Path, steps: &[Step], done: &AtomicBool) {
    let Ok(mut file) = OpenOptions::new().append(true).create(true).open(log) else { return };
    let mut seen = String::new();
    let mut next = 0usize;
    let mut buf = [0u8; 4096];
    while !done.load(Ordering::Acquire) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                let _ = file.write_all(chunk);
                seen.push_str(&String::from_utf8_lossy(chunk));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        while let Some(step) = steps.get(next) {
            let Some(at) = seen.find(&step.after) else { break };
            seen.drain(..at + step.after.len());
            if stream.write_all(step.send.as_bytes()).is_err() {
                return;
            }
            next += 1;
        }
    }
}

/// Type the host terminal's lines as they come (a serial terminal ends a line with CR).
fn type_stdin(mut writer: TcpStream) {
    thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { return };
            if writer.write_all(format!("{line}\r").as_bytes()).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{bridge, SerialInput, Step};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// The bridge logs what the "guest" sends and answers each cue in order.
    #[test]
    fn a_script_answers_its_cues_in_order() {
        let server = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = server.local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("serial-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("serial.txt");
        std::fs::write(&log, b"").unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let script = vec![Step::new("login: ", "root\n"), Step::new("# ", "uname\n")];
        let t = bridge(port, log.clone(), SerialInput::Script(script), done.clone());
        let (mut guest, _) = server.accept().unwrap();
        guest.write_all(b"boot\nlogin: ").unwrap();
        let mut got = [0u8; 5];
        guest.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"root\n");
        guest.write_all(b"# ").unwrap();
        let mut got = [0u8; 6];
        guest.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"uname\n");
        done.store(true, Ordering::Release);
        t.join().unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "boot\nlogin: # ");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
