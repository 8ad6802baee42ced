//! In-emulator test reporting in the format of `protocols::testlog`.

use crate::println;
use core::fmt;
use protocols::syscall::ShutdownStatus;
use protocols::testlog::{FAIL_PREFIX, PASS_PREFIX, SKIP_PREFIX};

/// Counts checks and prints one line per check.
#[derive(Default)]
pub struct Suite {
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Suite {
    /// An empty suite.
    pub const fn new() -> Self {
        Self { passed: 0, failed: 0, skipped: 0 }
    }

    /// Record a check that cannot run on this machine, and why: never a pass.
    pub fn skip(&mut self, name: &str, why: &str) {
        self.skipped += 1;
        println!("{SKIP_PREFIX}{name}: {why}");
    }

    /// Record a check: `Ok(())` passes, `Err(why)` fails with the reason printed.
    pub fn check<E: fmt::Display>(&mut self, name: &str, outcome: Result<(), E>) {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("{PASS_PREFIX}{name}");
            }
            Err(why) => {
                self.failed += 1;
                println!("{FAIL_PREFIX}{name}: {why}");
            }
        }
    }

    /// Print the summary line and return the verdict.
    pub fn finish(&self) -> ShutdownStatus {
        println!("{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped);
        if self.failed == 0 {
            ShutdownStatus::Pass
        } else {
            ShutdownStatus::Fail
        }
    }
}

/// `Ok(())` if `got == want`, else an error saying both.
pub fn expect_eq<T: PartialEq + fmt::Debug>(got: T, want: T) -> Result<(), Mismatch<T>> {
    if got == want {
        Ok(())
    } else {
        Err(Mismatch { got, want })
    }
}

/// A failed equality check.
pub struct Mismatch<T> {
    got: T,
    want: T,
}

impl<T: fmt::Debug> fmt::Display for Mismatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "got {:?}, want {:?}", self.got, self.want)
    }
}
