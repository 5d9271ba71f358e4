//! The opening of a connection a listening socket accepted, sans-IO: the
//! version negotiation ([`Negotiation`]: ZMTP 3.x or 2.0), our `READY`,
//! the peer's `READY` with its socket type checked and its `Identity` read.
//! Used by the native backplane (`XSUB`/`XPUB` ports) and the services
//! broker's native ROUTER.
//!
//! Feed it the peer's unconsumed bytes ([`Opening::step`]), send what it
//! appends to `out`, consume what each [`Opened`] says, until
//! [`Opened::Ready`]: then messages flow (read them with a
//! [`Decoder`] of the traffic's limits).

use crate::{
    ready, split_command, Decoder, FrameError, HandshakeError, Negotiation, Progress, Step,
};

/// Why an opening failed (the connection is to be closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpeningError {
    /// The greeting or `READY` broke the handshake.
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// A frame header no ZMTP peer sends.
    #[error("protocol error: {0}")]
    Frame(#[from] FrameError),
    /// A handshake command over the size limit (the `u64`, as its header
    /// tells).
    #[error("handshake command of {0} bytes, over the limit")]
    Oversize(u64),
}

/// What the peer said about itself in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peer {
    /// Its `Socket-Type` (`None` when its `READY` had none).
    pub socket_type: Option<String>,
    /// Its `Identity` property when set and not empty (the routing id a
    /// DEALER or REQ asks a ROUTER for; a ZMTP 2.0 identity is not kept).
    pub identity: Option<Vec<u8>>,
    /// A ZMTP 2.0 peer (no `READY`, no heartbeats).
    pub zmtp2: bool,
}

/// How far an [`Opening`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// More of the peer's bytes are needed.
    NeedMore,
    /// A ZMTP 3.`minor` greeting arrived: consume `len` bytes. Our `READY`
    /// was appended; the peer's comes next. (Heartbeat clocks start here;
    /// `minor` ≥ 1 understands `PING`.)
    Greeted {
        /// Bytes to consume.
        len: usize,
        /// The peer's minor version.
        minor: u8,
    },
    /// The handshake is done: consume `len` bytes; messages come next.
    Ready {
        /// Bytes to consume.
        len: usize,
        /// What the peer said.
        peer: Peer,
    },
}

/// The server side of a connection's handshake (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct Opening {
    negotiation: Negotiation,
    decoder: Decoder,
    greeted: bool,
    our_type: &'static str,
    port: &'static str,
    accepts: fn(&str) -> bool,
}

impl Opening {
    /// The opening of a connection to a socket of type `our_type`
    /// (announced in our greeting or `READY`), called `port` in errors,
    /// that accepts peers whose socket type `accepts` (a peer that names
    /// none is accepted, as libzmq does), with handshake commands of at
    /// most `max_command` bytes. Send
    /// [`v2::OPENING`](crate::v2::OPENING) when the connection opens.
    pub fn new(
        our_type: &'static str,
        port: &'static str,
        accepts: fn(&str) -> bool,
        max_command: usize,
    ) -> Opening {
        Opening {
            negotiation: Negotiation::new(),
            decoder: Decoder::with_limits(max_command, max_command),
            greeted: false,
            our_type,
            port,
            accepts,
        }
    }

    fn check(&self, peer: &str) -> Result<(), HandshakeError> {
        if (self.accepts)(peer) {
            Ok(())
        } else {
            Err(HandshakeError::SocketType {
                peer: peer.to_owned(),
                port: self.port,
            })
        }
    }

    /// Looks at the peer's unconsumed bytes `buf` (from the start of the
    /// connection until [`Opened::Greeted`], after what was consumed then)
    /// and appends to `out` what to send.
    ///
    /// # Errors
    /// [`OpeningError`]: close the connection.
    pub fn step(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<Opened, OpeningError> {
        if !self.greeted {
            return match self.negotiation.step(buf, self.our_type, out)? {
                Progress::NeedMore => Ok(Opened::NeedMore),
                Progress::V3 { minor } => {
                    self.greeted = true;
                    crate::put_ready(out, self.our_type);
                    Ok(Opened::Greeted {
                        len: crate::GREETING_LEN,
                        minor,
                    })
                }
                Progress::V2 { len, peer } => {
                    self.check(peer)?;
                    Ok(Opened::Ready {
                        len,
                        peer: Peer {
                            socket_type: Some(peer.to_owned()),
                            identity: None,
                            zmtp2: true,
                        },
                    })
                }
            };
        }
        match self.decoder.step(buf)? {
            Step::NeedMore => Ok(Opened::NeedMore),
            Step::Command { len, body } => {
                let (name, data) = split_command(buf.get(body..len).unwrap_or_default())
                    .map_err(HandshakeError::BadReady)?;
                if name == b"ERROR" {
                    return Err(HandshakeError::PeerError(
                        String::from_utf8_lossy(data.get(1..).unwrap_or(&[])).into_owned(),
                    )
                    .into());
                }
                if name != b"READY" {
                    return Err(HandshakeError::BadReady("first command is not READY").into());
                }
                // No Socket-Type (RFC 37 says SHOULD): the port decides,
                // as in libzmq.
                let socket_type = ready::socket_type(data)?;
                if let Some(t) = &socket_type {
                    self.check(t)?;
                }
                let identity = ready::property(data, "Identity")?
                    .filter(|id| !id.is_empty())
                    .map(<[u8]>::to_vec);
                Ok(Opened::Ready {
                    len,
                    peer: Peer {
                        socket_type,
                        identity,
                        zmtp2: false,
                    },
                })
            }
            Step::Oversize { .. } => Err(OpeningError::Oversize(self.decoder.oversize_len())),
            Step::Message { .. } | Step::Skipped(_) | Step::Interleaved { .. } => {
                Err(HandshakeError::BadReady("message before READY").into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Opening {
        Opening::new(
            "ROUTER",
            "services",
            |t| matches!(t, "DEALER" | "REQ"),
            4096,
        )
    }

    fn ready_with(props: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = b"\x05READY".to_vec();
        for (n, v) in props {
            body.push(n.len() as u8);
            body.extend_from_slice(n.as_bytes());
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v);
        }
        let mut out = Vec::new();
        crate::put_frame(&mut out, crate::COMMAND, &body);
        out
    }

    #[test]
    fn zmtp3_dealer_with_identity() {
        let mut o = router();
        let mut out = Vec::new();
        let g = crate::greeting();
        assert_eq!(o.step(&g[..20], &mut out), Ok(Opened::NeedMore));
        assert_eq!(
            o.step(&g, &mut out),
            Ok(Opened::Greeted { len: 64, minor: 1 })
        );
        // The rest of our greeting, then our READY.
        assert_eq!(out.len(), 64 - crate::v2::OPENING.len() + 2 + 28);
        let r = ready_with(&[("Socket-Type", b"DEALER"), ("Identity", b"w1")]);
        assert_eq!(o.step(&r[..5], &mut out), Ok(Opened::NeedMore));
        assert_eq!(
            o.step(&r, &mut out),
            Ok(Opened::Ready {
                len: r.len(),
                peer: Peer {
                    socket_type: Some("DEALER".into()),
                    identity: Some(b"w1".to_vec()),
                    zmtp2: false
                }
            })
        );
    }

    #[test]
    fn refusals() {
        let mut out = Vec::new();
        let g = crate::greeting();
        let greeted = || {
            let mut o = router();
            o.step(&g, &mut Vec::new()).unwrap();
            o
        };
        let publ = ready_with(&[("Socket-Type", b"PUB")]);
        assert!(matches!(
            greeted().step(&publ, &mut out),
            Err(OpeningError::Handshake(HandshakeError::SocketType { .. }))
        ));
        let mut ping = Vec::new();
        crate::put_ping(&mut ping, std::time::Duration::ZERO, b"");
        assert!(matches!(
            greeted().step(&ping, &mut out),
            Err(OpeningError::Handshake(HandshakeError::BadReady(_)))
        ));
        let mut msg = Vec::new();
        crate::put_frame(&mut msg, 0, b"hi");
        assert!(greeted().step(&msg, &mut out).is_err());
        let big = [crate::COMMAND | crate::LONG, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(
            greeted().step(&big, &mut out),
            Err(OpeningError::Oversize(65_545))
        );
        assert!(matches!(
            greeted().step(&[0xf0, 0], &mut out),
            Err(OpeningError::Frame(_))
        ));
        assert!(router().step(b"GET / HTTP/1.1", &mut out).is_err());
        // No Socket-Type: accepted.
        let none = ready_with(&[]);
        assert!(matches!(
            greeted().step(&none, &mut out),
            Ok(Opened::Ready { .. })
        ));
    }

    #[test]
    fn zmtp2_peer() {
        let mut o = router();
        let mut out = Vec::new();
        // Signature, revision 1, socket type DEALER (5), empty identity.
        let mut g = crate::v2::OPENING[..10].to_vec();
        g.extend_from_slice(&[1, 5, 0, 0]);
        assert_eq!(
            o.step(&g, &mut out),
            Ok(Opened::Ready {
                len: 14,
                peer: Peer {
                    socket_type: Some("DEALER".into()),
                    identity: None,
                    zmtp2: true
                }
            })
        );
    }
}
