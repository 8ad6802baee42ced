//! The machine-readable test lines every in-emulator test prints on the serial console.
//!
//! One line per check: `TEST PASS <name>`, `TEST FAIL <name>: <why>`, or `TEST SKIP
//! <name>: <why>` for a check that could not run here (a VM on a CPU without VT-x); a
//! suite ends with the line `<N> passed, <N> failed, <N> skipped`. The host test harness
//! reads exactly these.

/// Prefix of a passing check's line.
pub const PASS_PREFIX: &str = "TEST PASS ";
/// Prefix of a failing check's line.
pub const FAIL_PREFIX: &str = "TEST FAIL ";
/// Prefix of the line of a check that did not run.
pub const SKIP_PREFIX: &str = "TEST SKIP ";

/// A check's outcome parsed back from a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The named check passed.
    Pass(&'a str),
    /// The named check failed, with the reason printed.
    Fail(&'a str, &'a str),
    /// The named check did not run, with the reason printed.
    Skip(&'a str, &'a str),
}

/// Parse one log line; `None` if it is not a test line.
pub fn parse_line(line: &str) -> Option<Outcome<'_>> {
    let line = line.trim_end();
    if let Some(name) = line.strip_prefix(PASS_PREFIX) {
        return Some(Outcome::Pass(name));
    }
    if let Some(rest) = line.strip_prefix(SKIP_PREFIX) {
        let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
        return Some(Outcome::Skip(name, why));
    }
    let rest = line.strip_prefix(FAIL_PREFIX)?;
    let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
    Some(Outcome::Fail(name, why))
}

/// Parse a summary line `N passed, N failed, N skipped` (or without the skip count, for
/// none) into `(passed, failed, skipped)`.
pub fn parse_summary(line: &str) -> Option<(u32, u32, u32)> {
    let mut parts = line.trim().split(", ");
    let passed = parts.next()?.strip_suffix(" passed")?.parse().ok()?;
    let failed = parts.next()?.strip_suffix(" failed")?.parse().ok()?;
    let skipped = match parts.next() {
        Some(s) => s.strip_suffix(" skipped")?.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((passed, failed, skipped))
}

#[cfg(test)]
mod tests {
    use super::{parse_line, parse_summary, Outcome};

    #[test]
    fn lines_parse() {
        assert_eq!(parse_line("TEST PASS debug_write\r"), Some(Outcome::Pass("debug_write")));
        assert_eq!(parse_line("TEST FAIL bad_ptr: got 0"), Some(Outcome::Fail("bad_ptr", "got 0")));
        assert_eq!(parse_line("kernel: hello"), None);
        assert_eq!(
            parse_line("TEST SKIP guest64: no VT-x"),
            Some(Outcome::Skip("guest64", "no VT-x"))
        );
    }

    #[test]
    fn summary_parses() {
        assert_eq!(parse_summary("12 passed, 0 failed"), Some((12, 0, 0)));
        assert_eq!(parse_summary("12 passed, 1 failed, 3 skipped"), Some((12, 1, 3)));
        assert_eq!(parse_summary("12 passed, 1 failed, 3 skipped, 4 more"), None);
        assert_eq!(parse_summary("12 passed,0 failed"), None);
        assert_eq!(parse_summary("x passed, 0 failed"), None);
    }
}
