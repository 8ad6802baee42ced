//! Bugs planted on purpose, to show that the `syscalls` fuzz target finds them (`cargo
//! xtask plant`). Compiled only with the `planted-bugs` feature, which nothing but that
//! command enables; the bug a run plants is named by the `PLANTED_BUG` environment
//! variable, so one build serves every bug. Each site in the kernel is one
//! `planted!(Name)` condition, `false` in every other build.

use std::sync::OnceLock;

/// The bugs that can be planted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// `Send` on an endpoint capability without the write right succeeds.
    SendWithoutWrite,
    /// A capability travels with a message sent through a capability without the grant
    /// right.
    TransferWithoutGrant,
    /// The fastpath switches to a receiver while a higher-priority thread is ready.
    FastpathIgnoresPriority,
    /// Minting an already badged capability replaces its badge.
    RemintChangesBadge,
}

impl Bug {
    /// Every bug, with the name `PLANTED_BUG` uses.
    pub const ALL: [(Self, &'static str); 4] = [
        (Self::SendWithoutWrite, "send-without-write"),
        (Self::TransferWithoutGrant, "transfer-without-grant"),
        (Self::FastpathIgnoresPriority, "fastpath-ignores-priority"),
        (Self::RemintChangesBadge, "remint-changes-badge"),
    ];
}

/// Whether `bug` is the one planted in this run.
pub fn active(bug: Bug) -> bool {
    static PLANTED: OnceLock<Option<Bug>> = OnceLock::new();
    let planted = PLANTED.get_or_init(|| {
        let name = std::env::var("PLANTED_BUG").ok()?;
        Bug::ALL.iter().find(|(_, n)| *n == name).map(|(b, _)| *b)
    });
    *planted == Some(bug)
}
