//! Per-client line assembly. A client's bytes arrive in small writes; the driver holds
//! them per client (by badge) until a newline and only then transmits the line, so two
//! clients printing at once never interleave mid-line. Lines are handed on without their
//! newline (the transmitter ends every line itself); a line longer than [`LINE_MAX`] is
//! cut there, and a client pushed out of a full table has its partial line ended.

/// Clients with a partial line held at once: every VMM a manifest may list, the root task
/// and a few more processes, so that no client of a full system is pushed out mid-line.
pub const CLIENTS: usize = protocols::manifest::MAX_VMS + 8;
/// Longest line held; longer ones are cut.
pub const LINE_MAX: usize = 200;

#[derive(Clone, Copy)]
struct Partial {
    badge: u64,
    last_use: u64,
    len: usize,
    buf: [u8; LINE_MAX],
}

impl Partial {
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// The partial lines of up to [`CLIENTS`] clients.
pub struct Lines {
    held: [Option<Partial>; CLIENTS],
    clock: u64,
}

impl Default for Lines {
    fn default() -> Self {
        Self::new()
    }
}

impl Lines {
    /// Nothing held.
    pub const fn new() -> Self {
        Self { held: [None; CLIENTS], clock: 0 }
    }

    /// Take `bytes` from client `badge`; every line they complete goes to `emit`.
    pub fn push(&mut self, badge: u64, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        let at = self.entry(badge, emit);
        let Some(slot) = self.held.get_mut(at) else { return };
        let p = slot.get_or_insert(Partial { badge, last_use: 0, len: 0, buf: [0; LINE_MAX] });
        p.last_use = clock;
        for &b in bytes {
            if b == b'\n' {
                emit(p.bytes());
                p.len = 0;
                continue;
            }
            if p.len == LINE_MAX {
                emit(p.bytes());
                p.len = 0;
            }
            if let Some(d) = p.buf.get_mut(p.len) {
                *d = b;
                p.len = p.len.saturating_add(1);
            }
        }
        if p.len == 0 {
            *slot = None;
        }
    }

    /// The entry for `badge`: its own, a free one, or the least recently used one, whose
    /// partial line is ended first.
    fn entry(&mut self, badge: u64, emit: &mut impl FnMut(&[u8])) -> usize {
        let own = self.held.iter().position(|h| h.is_some_and(|p| p.badge == badge));
        let free = || self.held.iter().position(Option::is_none);
        if let Some(at) = own.or_else(free) {
            return at;
        }
        let (at, oldest) = self
            .held
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, h)| h.map_or(0, |p| p.last_use))
            .map_or((0, None), |(i, h)| (i, h.take()));
        if let Some(p) = oldest {
            emit(p.bytes());
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::{Lines, CLIENTS, LINE_MAX};

    fn run(steps: &[(u64, &str)]) -> Vec<String> {
        let mut lines = Lines::new();
        let mut out = Vec::new();
        for (badge, text) in steps {
            lines.push(*badge, text.as_bytes(), &mut |l| {
                out.push(String::from_utf8_lossy(l).into_owned())
            });
        }
        out
    }

    #[test]
    fn clients_lines_never_interleave() {
        let out = run(&[
            (1, "TEST PASS al"),
            (2, "guest64: hel"),
            (1, "pha\nTEST "),
            (2, "lo\n"),
            (1, "PASS beta\n"),
        ]);
        assert_eq!(out, ["TEST PASS alpha", "guest64: hello", "TEST PASS beta"]);
    }

    #[test]
    fn long_lines_are_cut_and_empty_lines_kept() {
        let long = "x".repeat(LINE_MAX + 5) + "\n\n";
        let out = run(&[(7, &long)]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!((out[1].as_str(), out[2].as_str()), ("xxxxx", ""));
    }

    #[test]
    fn a_full_table_ends_the_oldest_partial_line() {
        let mut steps: Vec<(u64, String)> =
            (0..CLIENTS as u64).map(|b| (b, format!("c{b}"))).collect();
        steps.push((99, "new\n".into()));
        steps.push((1, "!\n".into()));
        let steps: Vec<(u64, &str)> = steps.iter().map(|(b, s)| (*b, s.as_str())).collect();
        assert_eq!(run(&steps), ["c0", "new", "c1!"]);
    }
}
