//! State shared by both ends: sequence numbers, credits, the publish queue,
//! timers and statistics.

use super::wire::{self, Heartbeat, Message};
use super::{Config, Instant, SendError, Stats};
use crate::frame;

/// Bytes of a queued data record header (its length u16, its kind u8).
const REC_HDR: usize = 3;

/// A transmitter silent for this long starts its next frame with a lone
/// delimiter. Noise on an idle line (a cable plugged in, a motor starting)
/// or the corrupted tail of the last frame would otherwise sit in the
/// peer's de-framer and spoil the next good frame; the extra `0x00` ends
/// that garbage as a frame of its own (dropped and counted) and costs one
/// byte per frame after a pause, nothing within a burst. (SLIP, RFC 1055,
/// flushes the same way.)
pub const IDLE_FLUSH_MS: u64 = 10;

#[derive(Debug, Clone)]
pub(crate) struct Endpoint<const TX: usize> {
    pub(crate) cfg: Config,
    local_max: usize,
    /// Queued data messages (PUBLISH, REQUEST, REPLY) as records `len u16,
    /// kind u8, frame payload`, encoded into frames only when transmitted,
    /// so sequence numbers follow the order on the wire.
    tx: [u8; TX],
    tx_head: usize,
    tx_len: usize,
    tx_frames: u32,
    tx_seq: u8,
    rx_expected: Option<u8>,
    /// PUBLISHes queued this session (charged against `tx_limit`).
    pub_queued: u16,
    /// PUBLISHes put on the wire this session (reported in heartbeats).
    pub_emitted: u16,
    /// The peer's credit limit for our PUBLISHes.
    tx_limit: u16,
    /// Our PUBLISHes the peer has acknowledged (from its heartbeats).
    peer_acked: u16,
    /// PUBLISHes received from the peer this session (including those
    /// learnt lost from its heartbeat).
    pub(crate) pub_received: u16,
    /// The credit limit we last advertised.
    advertised: u16,
    pub(crate) status_due: bool,
    pub(crate) last_rx: Instant,
    last_status: Option<Instant>,
    pub(crate) peer_max_frame: u16,
    pub(crate) stats: Stats,
    /// When the last frame was handed out by `poll_transmit`.
    last_tx: Option<Instant>,
    /// The next frame starts with a lone delimiter whatever the timing
    /// (set when a session starts).
    pub(crate) flush_due: bool,
}

impl<const TX: usize> Endpoint<TX> {
    /// `local_max`: the largest encoded frame (delimiter excluded) this end
    /// transmits, its own `FRAME`, so that a `poll_transmit` buffer of
    /// `FRAME + 2` bytes always suffices.
    pub(crate) const fn new(cfg: Config, local_max: usize) -> Self {
        Endpoint {
            cfg,
            local_max,
            tx: [0; TX],
            tx_head: 0,
            tx_len: 0,
            tx_frames: 0,
            tx_seq: 0,
            rx_expected: None,
            pub_queued: 0,
            pub_emitted: 0,
            tx_limit: 0,
            peer_acked: 0,
            pub_received: 0,
            advertised: 0,
            status_due: false,
            last_rx: Instant::ZERO,
            last_status: None,
            peer_max_frame: 0,
            stats: Stats::new(),
            last_tx: None,
            flush_due: true,
        }
    }

    /// Bytes of lone delimiter (0 or 1) to put before the next frame in an
    /// `out_len`-byte buffer: 1 after [`IDLE_FLUSH_MS`] of silence or when a
    /// flush is due, if the buffer holds any frame with it (`FRAME + 2`).
    pub(crate) fn lead(&self, now: Instant, out_len: usize) -> usize {
        let due = self.flush_due
            || self
                .last_tx
                .is_none_or(|t| now.millis_since(t) >= IDLE_FLUSH_MS);
        usize::from(due && out_len >= self.local_max + 2)
    }

    /// Writes `lead` delimiters (see [`Endpoint::lead`]) before a frame
    /// handed out at `now`.
    pub(crate) fn sent(&mut self, now: Instant, pre: &mut [u8]) {
        pre.fill(frame::DELIMITER);
        self.last_tx = Some(now);
        self.flush_due = false;
    }

    /// Starts a new session: counters to zero, queued PUBLISHes discarded
    /// (and counted).
    pub(crate) fn reset_session(&mut self, tx_limit: u16, advertised: u16) {
        self.discard_tx();
        self.end_session();
        self.rx_expected = None;
        self.pub_queued = 0;
        self.tx_limit = tx_limit;
        self.pub_received = 0;
        self.advertised = advertised;
        self.status_due = false;
        self.last_status = None;
        self.flush_due = true;
    }

    /// Counts our PUBLISHes the peer never acknowledged (they may or may not
    /// have arrived) and forgets them.
    pub(crate) fn end_session(&mut self) {
        let unacked = self.pub_emitted.wrapping_sub(self.peer_acked);
        if unacked < 0x8000 {
            self.stats.publish_unconfirmed = self
                .stats
                .publish_unconfirmed
                .wrapping_add(u32::from(unacked));
        }
        self.pub_emitted = 0;
        self.peer_acked = 0;
    }

    pub(crate) fn discard_tx(&mut self) {
        self.stats.drop_discarded = self.stats.drop_discarded.wrapping_add(self.tx_frames);
        self.tx_head = 0;
        self.tx_len = 0;
        self.tx_frames = 0;
    }

    pub(crate) fn set_rx_expected(&mut self, seq: u8) {
        self.rx_expected = Some(seq.wrapping_add(1));
    }

    /// Sequence check of a received frame: accepts in-order frames and frames
    /// after a gap (counting the missing ones), drops stale or repeated ones.
    pub(crate) fn accept_seq(&mut self, seq: u8) -> bool {
        let Some(expected) = self.rx_expected else {
            self.rx_expected = Some(seq.wrapping_add(1));
            return true;
        };
        let diff = seq.wrapping_sub(expected);
        if diff >= 128 {
            self.stats.duplicates = self.stats.duplicates.wrapping_add(1);
            return false;
        }
        self.stats.seq_gaps = self.stats.seq_gaps.wrapping_add(u32::from(diff));
        self.rx_expected = Some(seq.wrapping_add(1));
        true
    }

    /// PUBLISHes we may still queue.
    pub(crate) fn credits(&self) -> u16 {
        let d = self.tx_limit.wrapping_sub(self.pub_queued);
        if d >= 0x8000 {
            0
        } else {
            d
        }
    }

    /// Queues a data message (PUBLISH, REQUEST or REPLY) whose frame payload
    /// is the concatenation of `parts`; refusals are counted.
    /// Whether a data record of `rec_len` bytes could be queued now: credit
    /// left and room in the send buffer (after compaction).
    pub(crate) fn has_room(&self, rec_len: usize) -> bool {
        self.credits() > 0 && (self.tx_len - self.tx_head) + REC_HDR + rec_len <= TX
    }

    pub(crate) fn try_queue(&mut self, kind: u8, parts: &[&[u8]]) -> Result<(), SendError> {
        let res = self.queue_data(kind, parts);
        if let Err(e) = res {
            self.stats.count_send_error(e);
        }
        res
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "topic lengths are checked against the str8 limit and record lengths against the frame size before they are queued"
    )]
    pub(crate) fn try_queue_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let t = topic.as_bytes();
        if t.len() > wire::MAX_PUBLISH_TOPIC_LEN {
            self.stats.count_send_error(SendError::TopicTooLong);
            return Err(SendError::TopicTooLong);
        }
        self.try_queue(wire::kind::PUBLISH, &[&[t.len() as u8], t, payload])
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "topic lengths are checked against the str8 limit and record lengths against the frame size before they are queued"
    )]
    fn queue_data(&mut self, kind: u8, parts: &[&[u8]]) -> Result<(), SendError> {
        let rec_len: usize = parts.iter().map(|p| p.len()).sum();
        let wire_len = frame::encoded_len_for_payload(rec_len);
        if wire_len - 1 > usize::from(self.peer_max_frame)
            || wire_len - 1 > self.local_max
            || REC_HDR + rec_len > TX
            || rec_len > 0xFFFF
        {
            return Err(SendError::TooLarge);
        }
        if self.credits() == 0 {
            return Err(SendError::NoCredit);
        }
        if self.tx_len + REC_HDR + rec_len > TX {
            // Compact: move the queued records to the front.
            self.tx.copy_within(self.tx_head..self.tx_len, 0);
            self.tx_len -= self.tx_head;
            self.tx_head = 0;
            if self.tx_len + REC_HDR + rec_len > TX {
                return Err(SendError::QueueFull);
            }
        }
        let at = self.tx_len;
        self.tx[at..at + 2].copy_from_slice(&(rec_len as u16).to_le_bytes());
        self.tx[at + 2] = kind;
        let mut p = at + REC_HDR;
        for part in parts {
            self.tx[p..p + part.len()].copy_from_slice(part);
            p += part.len();
        }
        self.tx_len = p;
        self.tx_frames += 1;
        self.pub_queued = self.pub_queued.wrapping_add(1);
        Ok(())
    }

    pub(crate) fn has_publish(&self) -> bool {
        self.tx_head < self.tx_len
    }

    /// Frames of queued data messages.
    pub(crate) fn queued_publishes(&self) -> u32 {
        self.tx_frames
    }

    /// Encodes the next queued data message into `out`.
    pub(crate) fn transmit_publish(&mut self, out: &mut [u8]) -> Option<usize> {
        while self.has_publish() {
            let h = self.tx_head;
            let len = usize::from(u16::from_le_bytes([self.tx[h], self.tx[h + 1]]));
            let kind = self.tx[h + 2];
            let rec = &self.tx[h + REC_HDR..h + REC_HDR + len];
            self.tx_head = h + REC_HDR + len;
            self.tx_frames -= 1;
            if self.tx_head == self.tx_len {
                self.tx_head = 0;
                self.tx_len = 0;
            }
            let seq = self.tx_seq;
            match frame::encode(kind, seq, &[rec], out) {
                Ok(n) => {
                    self.tx_seq = seq.wrapping_add(1);
                    self.pub_emitted = self.pub_emitted.wrapping_add(1);
                    self.stats.frames_tx = self.stats.frames_tx.wrapping_add(1);
                    self.stats.publish_tx = self.stats.publish_tx.wrapping_add(1);
                    return Some(n);
                }
                Err(_) => {
                    // The caller's buffer is smaller than the frame: count it
                    // rather than stall the queue.
                    self.stats.drop_out_too_small = self.stats.drop_out_too_small.wrapping_add(1);
                }
            }
        }
        None
    }

    /// Encodes a control message into `out` with the next sequence number.
    pub(crate) fn transmit(&mut self, msg: &Message<'_>, out: &mut [u8]) -> Option<(usize, u8)> {
        let seq = self.tx_seq;
        match msg.encode(seq, out) {
            Ok(n) => {
                self.tx_seq = seq.wrapping_add(1);
                self.stats.frames_tx = self.stats.frames_tx.wrapping_add(1);
                Some((n, seq))
            }
            Err(_) => {
                self.stats.drop_out_too_small = self.stats.drop_out_too_small.wrapping_add(1);
                None
            }
        }
    }

    /// Whether a heartbeat should go out now (credit update or timer).
    pub(crate) fn status_needed(&self, now: Instant) -> bool {
        self.status_due
            || self
                .last_status
                .is_none_or(|t| now.millis_since(t) >= u64::from(self.cfg.heartbeat_interval_ms))
    }

    /// Builds and encodes a heartbeat advertising `limit`.
    pub(crate) fn transmit_status(
        &mut self,
        now: Instant,
        limit: u16,
        sub_count: u8,
        sub_digest: u16,
        out: &mut [u8],
    ) -> Option<usize> {
        let hb = Heartbeat {
            pub_sent: self.pub_emitted,
            pub_received: self.pub_received,
            credit_limit: limit,
            sub_count,
            sub_digest,
        };
        let (n, _) = self.transmit(&Message::Heartbeat(hb), out)?;
        self.advertised = limit;
        self.status_due = false;
        self.last_status = Some(now);
        Some(n)
    }

    /// Notes a new credit limit we could advertise: a heartbeat is scheduled
    /// once the peer's remaining credit drops to half the window or less.
    pub(crate) fn credit_changed(&mut self, limit: u16, window: u16) {
        if limit == self.advertised {
            return;
        }
        let remaining = self.advertised.wrapping_sub(self.pub_received);
        let remaining = if remaining >= 0x8000 { 0 } else { remaining };
        if remaining <= window / 2 {
            self.status_due = true;
        }
    }

    /// A heartbeat from the peer: reconcile its publish counter (PUBLISHes it
    /// sent that never arrived are counted lost) and take its credit limit.
    pub(crate) fn on_heartbeat(&mut self, hb: &Heartbeat) {
        let missing = hb.pub_sent.wrapping_sub(self.pub_received);
        if missing < 0x8000 {
            self.stats.publish_lost = self.stats.publish_lost.wrapping_add(u32::from(missing));
        }
        self.pub_received = hb.pub_sent;
        self.tx_limit = hb.credit_limit;
        self.peer_acked = hb.pub_received;
    }

    /// Whether a PUBLISH arriving now exceeds the credit we advertised
    /// (a peer that ignores flow control).
    pub(crate) fn beyond_credit(&self) -> bool {
        self.pub_received.wrapping_sub(self.advertised) < 0x8000
    }

    pub(crate) fn on_publish_received(&mut self) {
        self.pub_received = self.pub_received.wrapping_add(1);
        self.stats.publish_rx = self.stats.publish_rx.wrapping_add(1);
    }

    /// When the link needs attention (a heartbeat to send, a timeout to
    /// check), assuming it is up. `Instant::ZERO` when something is due now.
    pub(crate) fn next_deadline(&self) -> Instant {
        if self.status_due || self.has_publish() {
            return Instant::ZERO;
        }
        let timeout = self
            .last_rx
            .millis()
            .saturating_add(u64::from(self.cfg.timeout_ms));
        let heartbeat = match self.last_status {
            None => 0,
            Some(t) => t
                .millis()
                .saturating_add(u64::from(self.cfg.heartbeat_interval_ms)),
        };
        Instant::from_millis(timeout.min(heartbeat))
    }

    pub(crate) fn timed_out(&self, now: Instant) -> bool {
        now.millis_since(self.last_rx) >= u64::from(self.cfg.timeout_ms)
    }
}
