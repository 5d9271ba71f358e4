//! What subscribers send, read as libzmq's XPUB reads it: a message whose
//! first frame is a subscription (`0x01`/`0x00` + prefix) applies every
//! frame that is one (several subscriptions in one multipart message), and
//! any other frame of it goes to the publishers as a one-frame message;
//! any other message goes to the publishers whole (libzmq's proxy forwards
//! it upstream through its XSUB). (libzmq would also apply a `0x01`/`0x00`
//! frame after the first frame of such a message as a subscription; we do
//! not.)

use std::time::Instant;

use super::{Forwarder, QUEUE_ENTRY};
use banyan_zmtp::{self as zmtp, parts::Upstream};

impl Forwarder<'_> {
    /// A whole `message` from subscriber `index`; `first` is its first
    /// frame's body.
    pub(super) fn subscriber_message(
        &mut self,
        index: usize,
        message: &[u8],
        first: &[u8],
        now: Instant,
    ) {
        if zmtp::parts::upstream_kind(first) == Upstream::Message {
            self.send_upstream(message);
            return;
        }
        let mut single = Vec::new();
        for part in zmtp::parts::subscriptions(message) {
            match part {
                Ok(s) => self.subscription(index, s, now),
                Err(body) => {
                    single.clear();
                    zmtp::put_frame(&mut single, 0, body);
                    self.send_upstream(&single);
                }
            }
        }
    }

    /// Queues a message from a subscriber for every publisher; a publisher
    /// whose queue is full, or that it would take over the memory budget,
    /// loses it (counted in `dropped`, and in `shed` for the budget; no
    /// wait: upstream messages never hold the forwarding back).
    fn send_upstream(&mut self, message: &[u8]) {
        let (hwm, max_bytes) = (self.config.hwm, self.config.queue_bytes);
        let cost = message.len() + QUEUE_ENTRY;
        for k in 0..self.publishers.len() {
            let Some(&i) = self.publishers.get(k) else {
                break;
            };
            let over_budget = self.over_budget(cost);
            let Some(c) = self.connections.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if c.out.is_full(hwm, max_bytes) {
                self.reporter.stats.dropped += 1;
            } else if over_budget {
                self.reporter.stats.dropped += 1;
                self.reporter.stats.shed += 1;
            } else {
                c.out.push_message(message);
                self.lists.mark(i, &mut c.io);
                self.touch(i);
            }
        }
    }
}
