//! The frames of a whole message, for the rare paths that look past the
//! first frame: a subscriber that sends several subscriptions in one
//! multipart message (libzmq's XPUB applies every part), or a message it
//! sends upstream.

use crate::{parse_header, Subscription, MORE};

/// Iterator over the frames of one whole message as
/// [`Step::Message`](crate::Step::Message) delimits it: `(flags, body)`.
/// It stops at the end of the bytes, or early at a malformed header
/// (which a message the decoder delivered never has).
#[derive(Debug, Clone)]
pub struct Parts<'a> {
    rest: &'a [u8],
}

/// The frames of `message` (all its frames with their headers).
pub fn parts(message: &[u8]) -> Parts<'_> {
    Parts { rest: message }
}

impl<'a> Iterator for Parts<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let h = parse_header(self.rest).ok()??;
        let end = h
            .header_len
            .checked_add(usize::try_from(h.body_len).ok()?)?;
        let body = self.rest.get(h.header_len..end)?;
        self.rest = self.rest.get(end..).unwrap_or(&[]);
        if h.flags & MORE == 0 {
            // The last frame: whatever follows is not this message.
            self.rest = &[];
        }
        Some((h.flags, body))
    }
}

/// What a whole message from a subscriber means, as libzmq's XPUB reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The first frame is a subscription: every frame that is one applies
    /// ([`subscriptions`]); each other frame is a one-frame message for the
    /// publishers.
    Subscriptions,
    /// Not a subscription: the whole message goes to the publishers.
    Message,
}

/// Classifies a subscriber's message by its first frame's body.
pub fn upstream_kind(first: &[u8]) -> Upstream {
    if crate::message_subscription(first).is_some() {
        Upstream::Subscriptions
    } else {
        Upstream::Message
    }
}

/// Each frame of a message from a subscriber: `Ok` a subscription, `Err`
/// the body of a frame that is not one.
pub fn subscriptions(
    message: &[u8],
) -> impl Iterator<Item = Result<Subscription<'_>, &'_ [u8]>> + '_ {
    parts(message).map(|(_, body)| crate::message_subscription(body).ok_or(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{put_frame, LONG};

    #[test]
    fn frames_of_a_message() {
        let mut m = Vec::new();
        put_frame(&mut m, MORE, b"\x01a");
        put_frame(&mut m, MORE, &[9; 300]);
        put_frame(&mut m, 0, b"\x00b");
        put_frame(&mut m, 0, b"next message");
        let got: Vec<(u8, Vec<u8>)> = parts(&m).map(|(f, b)| (f, b.to_vec())).collect();
        assert_eq!(
            got,
            [
                (MORE, b"\x01a".to_vec()),
                (MORE | LONG, vec![9; 300]),
                (0, b"\x00b".to_vec())
            ]
        );
        let subs: Vec<_> = subscriptions(&m).collect();
        assert_eq!(
            subs,
            [
                Ok(Subscription::Subscribe(b"a")),
                Err(&[9u8; 300][..]),
                Ok(Subscription::Cancel(b"b"))
            ]
        );
        // Truncated or broken: stops, no panic.
        assert_eq!(parts(&m[..5]).count(), 1);
        assert_eq!(parts(&[0x40, 1, 2]).count(), 0);
        assert_eq!(parts(&[]).count(), 0);
        assert_eq!(upstream_kind(b"\x01t"), Upstream::Subscriptions);
        assert_eq!(upstream_kind(b"hello"), Upstream::Message);
        assert_eq!(upstream_kind(b""), Upstream::Message);
    }
}
