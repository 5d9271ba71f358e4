//! Which implementation of ZeroMQ a server runs on: the native one (this
//! crate's ZMTP, spoken by the server thread itself) or libzmq's sockets.
//! One type for the backplane (`banyan_backplane::Engine`) and the
//! services broker (`banyan_services::broker::Engine`), which re-export it.

/// How a server (the backplane, the services broker) speaks ZeroMQ.
/// Exhaustive on purpose: both servers match on it, and a new engine
/// needs both of them taught.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Engine {
    /// The server thread speaks ZMTP itself over `epoll`: it accepts the
    /// connections, reads and writes them in its own poll loop (no libzmq
    /// I/O thread). The backplane drops only for the subscriber whose queue
    /// is full. The default.
    #[default]
    Native,
    /// libzmq's sockets (what the servers used before the native engine;
    /// kept for comparison): XSUB/XPUB with our forwarding loop for the
    /// backplane (a refused message is dropped for every subscriber it was
    /// going to), a ROUTER for the broker (its I/O thread reads and writes
    /// the connections).
    Libzmq,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "native" => Ok(Engine::Native),
            "libzmq" => Ok(Engine::Libzmq),
            _ => Err(format!("unknown engine {s:?} (native or libzmq)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Engine;

    #[test]
    fn parses_both_names_and_refuses_others() {
        assert_eq!("native".parse(), Ok(Engine::Native));
        assert_eq!("libzmq".parse(), Ok(Engine::Libzmq));
        assert_eq!(Engine::default(), Engine::Native);
        let e = "zmq".parse::<Engine>().unwrap_err();
        assert!(e.contains("\"zmq\""), "{e}");
    }
}
