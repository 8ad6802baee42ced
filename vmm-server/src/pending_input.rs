//! Console input the guest's UART has not taken yet. The host's bytes come in bursts of
//! up to a message's worth; the UART's receive FIFO takes 16 and refuses the rest until
//! the guest reads. What it refuses waits here, in order, and is offered again after
//! later exits; past [`PENDING`] bytes the newest are dropped and counted, so a guest
//! that never reads cannot make the VMM hold more.

/// Bytes held at most.
pub const PENDING: usize = 1024;

/// Bytes waiting for the guest's UART, oldest first.
pub struct PendingInput {
    buf: [u8; PENDING],
    head: usize,
    len: usize,
    dropped: u64,
}

impl Default for PendingInput {
    fn default() -> Self {
        Self::new()
    }
}

impl PendingInput {
    /// Empty.
    pub const fn new() -> Self {
        Self { buf: [0; PENDING], head: 0, len: 0, dropped: 0 }
    }

    /// Queue `bytes` behind what waits; those past the room are dropped and counted.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == PENDING {
                self.dropped = self.dropped.saturating_add(1);
                continue;
            }
            if let Some(d) =
                self.buf.get_mut(self.head.wrapping_add(self.len).wrapping_rem(PENDING))
            {
                *d = b;
            }
            self.len = self.len.saturating_add(1);
        }
    }

    /// Offer the waiting bytes to `take` in order until it refuses one (which stays, to
    /// be offered first next time); returns how many it took.
    pub fn offer(&mut self, mut take: impl FnMut(u8) -> bool) -> usize {
        let mut taken = 0usize;
        while let Some(&b) = self.buf.get(self.head).filter(|_| self.len > 0) {
            if !take(b) {
                break;
            }
            self.head = self.head.wrapping_add(1).wrapping_rem(PENDING);
            self.len = self.len.saturating_sub(1);
            taken = taken.saturating_add(1);
        }
        taken
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes dropped for want of room.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::{PendingInput, PENDING};

    #[test]
    fn refused_bytes_wait_in_order_for_the_next_offer() {
        let mut p = PendingInput::new();
        p.push(b"uname -r\n");
        let mut fifo = Vec::new();
        // A FIFO with room for four.
        assert_eq!(
            p.offer(|b| fifo.len() < 4 && {
                fifo.push(b);
                true
            }),
            4
        );
        assert_eq!(fifo, b"unam");
        assert!(!p.is_empty());
        fifo.clear();
        p.push(b"ls\n");
        assert_eq!(
            p.offer(|b| {
                fifo.push(b);
                true
            }),
            8
        );
        assert_eq!(fifo, b"e -r\nls\n");
        assert!(p.is_empty());
        assert_eq!(p.offer(|_| true), 0);
    }

    #[test]
    fn a_guest_that_never_reads_makes_the_queue_drop_the_newest() {
        let mut p = PendingInput::new();
        let bytes: Vec<u8> = (0..PENDING + 10).map(|i| i as u8).collect();
        p.push(&bytes);
        assert_eq!(p.dropped(), 10);
        let mut got = Vec::new();
        p.offer(|b| {
            got.push(b);
            true
        });
        assert_eq!(got, bytes[..PENDING]);
    }
}
