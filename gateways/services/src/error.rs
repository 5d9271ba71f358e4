//! The error type of the socket layer (broker, client, worker, devices).

use std::io;

use crate::proto::ErrorCode;

/// What went wrong in a services call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A port could not be bound.
    #[error("cannot bind {endpoint}: {source} — is another broker or device running there? Choose another port (backplane --services-port, or port 0 for any)")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        source: io::Error,
    },
    /// An endpoint could not be connected (usually a malformed address).
    #[error("cannot connect to {endpoint}: {source} — endpoints look like tcp://HOST:PORT")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        source: io::Error,
    },
    /// A ZeroMQ call failed (out of file descriptors, context terminated).
    #[error("ZeroMQ: {0}")]
    Transport(io::Error),
    /// The broker answered with an error code instead of a reply.
    #[error("{code}: {detail}")]
    Service {
        /// Why.
        code: ErrorCode,
        /// The broker's or worker's explanation.
        detail: String,
    },
    /// No answer came before the request's deadline (the broker may be
    /// down, or the worker slow): the client gave up.
    #[error("no answer within the deadline — is the broker running (backplane with services on)?")]
    Timeout,
    /// A request could not be made: bad service name, too many requests in
    /// flight, or a body that is not one MessagePack value.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A value could not be encoded as MessagePack.
    #[error("cannot encode the body: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A reply body does not match the requested Rust type.
    #[error("reply does not match the expected type: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

impl Error {
    /// The broker's error code, if the broker answered with one
    /// ([`Error::Timeout`] counts as [`ErrorCode::Timeout`]).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Service { code, .. } => Some(*code),
            Error::Timeout => Some(ErrorCode::Timeout),
            _ => None,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn transport(e: zmq::Error) -> Error {
    Error::Transport(io_error(e))
}

pub(crate) fn io_error(e: zmq::Error) -> io::Error {
    io::Error::from_raw_os_error(e.to_raw())
}

/// The TCP port a socket bound to (`tcp://0.0.0.0:PORT`).
pub(crate) fn bound_port(socket: &zmq::Socket) -> Result<u16> {
    let ep = socket
        .get_last_endpoint()
        .map_err(transport)?
        .map_err(|_| Error::Transport(io::Error::other("endpoint is not UTF-8")))?;
    ep.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Error::Transport(io::Error::other(format!("no port in {ep}"))))
}

pub(crate) fn bind(socket: &zmq::Socket, endpoint: &str) -> Result<()> {
    socket.bind(endpoint).map_err(|e| Error::Bind {
        endpoint: endpoint.to_owned(),
        source: io_error(e),
    })
}

pub(crate) fn connect(socket: &zmq::Socket, endpoint: &str) -> Result<()> {
    socket.connect(endpoint).map_err(|e| Error::Connect {
        endpoint: endpoint.to_owned(),
        source: io_error(e),
    })
}
