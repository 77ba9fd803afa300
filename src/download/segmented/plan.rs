//! The pure half of a split download: cutting the missing ranges into pieces,
//! who fetches what ([`Table`]: work stealing and the end game's takeover of a
//! stalled range), and which connection failures cost a retry ([`Rounds`]).
//! No I/O here; the connections in [`super`] ask and report.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Largest smallest-half a connection steals: with a large `--min-split-size`,
/// connections still take over halves down to this size at the end of a file.
pub const STEAL_MIN_CAP: u64 = 1024 * 1024;
/// A range whose connection received nothing for this long is taken over whole by
/// an idle connection once nothing is left to split.
pub const TAKEOVER_IDLE: Duration = Duration::from_millis(100);

/// The smallest half worth a new request when stealing.
pub fn steal_min(min_split_size: u64) -> u64 {
    min_split_size.clamp(1, STEAL_MIN_CAP)
}

/// Cut the missing ranges of a file into pieces for up to `connections`
/// connections, each piece at least `min_split_size` long where the ranges allow.
pub fn plan(gaps: &[(u64, u64)], connections: usize, min_split_size: u64) -> Vec<(u64, u64)> {
    let remaining: u64 = gaps.iter().map(|(s, e)| e - s).sum();
    let target = (remaining / min_split_size.max(1)).clamp(1, connections.max(1) as u64);
    let piece = remaining.div_ceil(target).max(1);
    let mut pieces = Vec::new();
    for &(start, end) in gaps {
        let len = end - start;
        let k = len.div_ceil(piece).min(len / min_split_size.max(1)).max(1);
        for i in 0..k {
            let a = start + len * i / k;
            let b = start + len * (i + 1) / k;
            if a < b {
                pieces.push((a, b));
            }
        }
    }
    pieces
}

/// One connection's current range.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Where this range started (bytes from here to `written` are written).
    pub(super) run_start: u64,
    /// Bytes before this offset have been written.
    pub(super) written: u64,
    /// Bytes before this offset have been received.
    pub(super) pos: u64,
    /// End of the range (exclusive); a stealer may lower it, never below `pos`.
    pub(super) end: u64,
    /// When data last arrived (or the range was assigned), or when a pause of
    /// our own rate limit ends.
    pub(super) last_data: Instant,
    /// Another connection took over the rest of this range: whatever this
    /// connection still receives is dropped.
    pub(super) taken_over: bool,
}

/// Who fetches what, shared by the connections of one download.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// Ranges nobody is fetching, sorted by start.
    pub(super) pending: Vec<(u64, u64)>,
    /// Ranges being fetched, by connection.
    slots: HashMap<usize, Slot>,
    /// Written ranges no longer in a slot, not yet recorded.
    written: Vec<(u64, u64)>,
    /// Bytes received in this try (only grows).
    pub(super) received: u64,
    /// The connection that stays, idle, for the end game.
    waiter: Option<usize>,
}

impl Table {
    pub(super) fn assign(&mut self, conn: usize, (start, end): (u64, u64)) {
        if self.waiter == Some(conn) {
            self.waiter = None;
        }
        self.slots.insert(
            conn,
            Slot {
                run_start: start,
                written: start,
                pos: start,
                end,
                last_data: Instant::now(),
                taken_over: false,
            },
        );
    }

    /// The next range for `conn`: a pending one, half of the largest one, or
    /// the whole rest of a stalled one.
    pub(super) fn take_work(&mut self, conn: usize, steal_min: u64) -> Option<(u64, u64)> {
        if !self.pending.is_empty() {
            let work = self.pending.remove(0);
            self.assign(conn, work);
            return Some(work);
        }
        let (&victim, rest) = self
            .slots
            .iter()
            .map(|(id, s)| (id, s.end - s.pos))
            .max_by_key(|&(_, rest)| rest)?;
        let slot = self.slots.get_mut(&victim).expect("just found");
        let from = if rest >= 2 * steal_min {
            slot.pos + rest / 2
        } else {
            // Only a range that received data and then stopped: one whose
            // request is still unanswered is the timeouts' business (taking it
            // over would only start another wait for an answer).
            let stalled = self.slots.iter().find(|(_, s)| {
                s.pos < s.end
                    && s.pos > s.run_start
                    && Instant::now().saturating_duration_since(s.last_data) >= TAKEOVER_IDLE
            });
            let (&victim, _) = stalled?;
            let slot = self.slots.get_mut(&victim).expect("just found");
            let from = slot.pos;
            let work = (from, slot.end);
            slot.end = from;
            slot.taken_over = true;
            self.assign(conn, work);
            return Some(work);
        };
        let work = (from, slot.end);
        slot.end = from;
        self.assign(conn, work);
        Some(work)
    }

    /// Whether some range is still being fetched.
    pub(super) fn unfinished(&self) -> bool {
        self.slots.values().any(|s| s.pos < s.end)
    }

    /// Whether `conn`, with nothing to do, should stay to take over a range
    /// that stalls: only while ranges are unfinished, and only one connection.
    pub(super) fn wait_for_end_game(&mut self, conn: usize) -> bool {
        if !self.unfinished() {
            if self.waiter == Some(conn) {
                self.waiter = None;
            }
            return false;
        }
        match self.waiter {
            Some(w) if w != conn => false,
            _ => {
                self.waiter = Some(conn);
                true
            }
        }
    }

    /// Take up to `n` bytes of a chunk for `conn`'s range; returns how many,
    /// and whether the range is now complete.
    pub(super) fn accept(&mut self, conn: usize, n: u64) -> (u64, bool) {
        let slot = self
            .slots
            .get_mut(&conn)
            .expect("a fetching connection has a slot");
        let take = n.min(slot.end - slot.pos);
        slot.pos += take;
        slot.last_data = Instant::now();
        self.received += take;
        (take, slot.pos >= slot.end)
    }

    /// `conn` will not read before `until` (rate limit): not a stall.
    pub(super) fn quiet_until(&mut self, conn: usize, until: Instant) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.last_data = slot.last_data.max(until);
        }
    }

    pub(super) fn slot(&self, conn: usize) -> Slot {
        *self
            .slots
            .get(&conn)
            .expect("a fetching connection has a slot")
    }

    pub(super) fn wrote(&mut self, conn: usize, upto: u64) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.written = slot.written.max(upto);
        }
    }

    /// `conn` stops fetching: what it wrote waits to be recorded, the rest of its
    /// range goes back to the pending list.
    pub(super) fn release(&mut self, conn: usize) {
        let Some(slot) = self.slots.remove(&conn) else {
            return;
        };
        if slot.written > slot.run_start {
            self.written.push((slot.run_start, slot.written));
        }
        if slot.end > slot.written {
            let at = self.pending.partition_point(|&(s, _)| s < slot.written);
            self.pending.insert(at, (slot.written, slot.end));
        }
    }

    /// Nothing pending and nobody fetching, except connections whose range was
    /// taken over (they may wait long for a chunk they would drop; what they
    /// hold is written when they stop).
    pub(super) fn is_complete(&self) -> bool {
        self.pending.is_empty() && self.slots.values().all(|s| s.taken_over)
    }

    /// Every range written so far and not yet recorded.
    pub(super) fn written_ranges(&mut self) -> Vec<(u64, u64)> {
        let mut ranges = std::mem::take(&mut self.written);
        ranges.extend(
            self.slots
                .values()
                .filter(|s| s.written > s.run_start)
                .map(|s| (s.run_start, s.written)),
        );
        ranges
    }
}

/// Which connection failures cost a retry of the download's budget: one with no
/// data received since the previous failure, and at most one per round of
/// reconnections, so that the connections an outage resets together cost one
/// retry, not one each.
#[derive(Debug, Default)]
pub(super) struct Rounds {
    received_at_failure: u64,
    round: u64,
    started_in: HashMap<usize, u64>,
}

impl Rounds {
    /// Connection `conn` failed with `received` bytes received by the download
    /// so far: is this failure charged?
    pub(super) fn charge(&mut self, conn: usize, received: u64) -> bool {
        let same_round = self.started_in.get(&conn).copied().unwrap_or(0) == self.round;
        let charged = received == self.received_at_failure && same_round;
        self.received_at_failure = received;
        charged
    }

    /// A failure was charged: reconnections from now on are a new round.
    pub(super) fn next_round(&mut self) {
        self.round += 1;
    }

    /// `conn` reconnects in the current round.
    pub(super) fn restart(&mut self, conn: usize) {
        self.started_in.insert(conn, self.round);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_cuts_equal_pieces_no_smaller_than_the_minimum() {
        let mib = 1024 * 1024;
        assert_eq!(plan(&[(0, 16 * mib)], 4, 4 * mib).len(), 4);
        assert_eq!(plan(&[(0, 16 * mib)], 16, 4 * mib).len(), 4);
        assert_eq!(plan(&[(0, 7 * mib)], 16, 4 * mib), vec![(0, 7 * mib)]);
        let p = plan(&[(0, 256 * mib)], 16, 4 * mib);
        assert_eq!(p.len(), 16);
        assert!(p.iter().all(|(s, e)| e - s == 16 * mib));
        // Gaps of a resumed file: each cut on its own, covering exactly the gaps.
        let gaps = [(10, 20), (100, 1000)];
        let p = plan(&gaps, 4, 100);
        let covered: u64 = p.iter().map(|(s, e)| e - s).sum();
        assert_eq!(covered, 10 + 900);
        assert_eq!(p[0], (10, 20));
        assert!(p.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    #[test]
    fn stealing_takes_the_second_half_of_the_largest_range() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        t.assign(1, (100, 400));
        assert_eq!(t.accept(1, 100), (100, false));
        // Connection 0 finished; 1 has 200 left: 0 takes [300, 400).
        assert_eq!(t.accept(0, 100), (100, true));
        t.wrote(0, 100);
        t.release(0);
        assert!(t.pending.is_empty());
        assert_eq!(t.take_work(0, 10), Some((300, 400)));
        // 1 can only take up to its new end.
        assert_eq!(t.accept(1, 500), (100, true));
        assert_eq!(t.slot(1).end, 300);
        // Connection 0 has 100 left: halves of 50 are worth a request at a
        // minimum of 50, not at 60.
        assert_eq!(t.take_work(2, 60), None);
        assert_eq!(t.take_work(2, 50), Some((350, 400)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_range_is_taken_over_whole_at_the_end() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        t.accept(0, 90);
        // 10 bytes left: too small to split, and the connection is not stalled.
        assert_eq!(t.take_work(1, 50), None);
        assert!(t.unfinished());
        // Paused by the rate limit for a while: not a stall.
        t.quiet_until(0, Instant::now() + 3 * TAKEOVER_IDLE);
        tokio::time::advance(2 * TAKEOVER_IDLE).await;
        assert_eq!(t.take_work(1, 50), None);
        tokio::time::advance(2 * TAKEOVER_IDLE).await;
        assert_eq!(t.take_work(1, 50), Some((90, 100)));
        assert_eq!(t.slot(0).end, 90);
        // The stalled connection would drop whatever it still gets.
        assert_eq!(t.accept(0, 5), (0, true));
        assert!(!t.is_complete());
        t.accept(1, 10);
        assert!(!t.is_complete(), "connection 1 has not finished");
        t.wrote(1, 100);
        t.release(1);
        // Complete, though connection 0 has not returned.
        assert!(t.is_complete());
    }

    #[test]
    fn an_outage_that_resets_every_connection_costs_one_retry_per_round() {
        // As the coordinator does: a charge starts the next round.
        fn fail(r: &mut Rounds, conn: usize, received: u64) -> bool {
            let charged = r.charge(conn, received);
            if charged {
                r.next_round();
            }
            r.restart(conn);
            charged
        }
        let mut r = Rounds::default();
        // Data flowed, then all 8 connections fail at once: one charge.
        let charged = (0..8).filter(|&c| fail(&mut r, c, 1000)).count();
        assert_eq!(charged, 1);
        // The server is still down: every reconnection fails, one charge again.
        let charged = (0..8).filter(|&c| fail(&mut r, c, 1000)).count();
        assert_eq!(charged, 1);
        // One flaky connection while the others deliver: never charged.
        assert!(!fail(&mut r, 3, 2000));
        assert!(!fail(&mut r, 3, 3000));
        // Nothing flows any more and it fails again: charged.
        assert!(fail(&mut r, 3, 3000));
    }

    #[test]
    fn one_idle_connection_waits_for_the_end_game() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        assert!(t.wait_for_end_game(1));
        assert!(!t.wait_for_end_game(2), "a second idle connection leaves");
        assert!(t.wait_for_end_game(1));
        t.accept(0, 100);
        assert!(!t.wait_for_end_game(1), "nothing unfinished: leave");
    }

    #[test]
    fn pieces_are_never_smaller_than_the_minimum() {
        // A gap just over one piece is not cut in two halves below the minimum.
        let p = plan(&[(0, 100), (200, 335)], 4, 60);
        assert!(p.iter().all(|(s, e)| e - s >= 60), "{p:?}");
        assert_eq!(p.iter().map(|(s, e)| e - s).sum::<u64>(), 235);
    }

    #[test]
    fn a_failed_connection_hands_back_what_it_did_not_write() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        t.accept(0, 60);
        t.wrote(0, 50);
        t.release(0);
        assert_eq!(t.pending, vec![(50, 100)]);
        assert_eq!(t.written_ranges(), vec![(0, 50)]);
        assert!(!t.is_complete());
        assert_eq!(t.take_work(1, 10), Some((50, 100)));
    }
}
