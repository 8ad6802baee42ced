//! The machine-readable test lines every in-emulator test prints on the serial console.
//!
//! One line per check: `TEST PASS <name>` or `TEST FAIL <name>: <why>`; a suite ends with
//! the line `<N> passed, <N> failed`. The host test harness reads exactly these.

/// Prefix of a passing check's line.
pub const PASS_PREFIX: &str = "TEST PASS ";
/// Prefix of a failing check's line.
pub const FAIL_PREFIX: &str = "TEST FAIL ";

/// A check's outcome parsed back from a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The named check passed.
    Pass(&'a str),
    /// The named check failed, with the reason printed.
    Fail(&'a str, &'a str),
}

/// Parse one log line; `None` if it is not a test line.
pub fn parse_line(line: &str) -> Option<Outcome<'_>> {
    let line = line.trim_end();
    if let Some(name) = line.strip_prefix(PASS_PREFIX) {
        return Some(Outcome::Pass(name));
    }
    let rest = line.strip_prefix(FAIL_PREFIX)?;
    Some(match rest.split_once(": ") {
        Some((name, why)) => Outcome::Fail(name, why),
        None => Outcome::Fail(rest, ""),
    })
}

/// Parse a summary line `N passed, N failed` into `(passed, failed)`.
pub fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let (p, f) = line.trim().split_once(", ")?;
    let passed = p.strip_suffix(" passed")?.parse().ok()?;
    let failed = f.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

#[cfg(test)]
mod tests {
    use super::{parse_line, parse_summary, Outcome};

    #[test]
    fn lines_parse() {
        assert_eq!(parse_line("TEST PASS debug_write\r"), Some(Outcome::Pass("debug_write")));
        assert_eq!(parse_line("TEST FAIL bad_ptr: got 0"), Some(Outcome::Fail("bad_ptr", "got 0")));
        assert_eq!(parse_line("kernel: hello"), None);
    }

    #[test]
    fn summary_parses() {
        assert_eq!(parse_summary("12 passed, 0 failed"), Some((12, 0)));
        assert_eq!(parse_summary("12 passed,0 failed"), None);
        assert_eq!(parse_summary("x passed, 0 failed"), None);
    }
}
