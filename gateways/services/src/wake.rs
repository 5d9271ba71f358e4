//! Waking a thread blocked in `zmq::poll` from another thread: an inproc
//! PAIR socket pair; the sleeping side polls `rx` with its other sockets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{transport, Result};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The sending half, shareable between threads.
pub(crate) struct Waker {
    tx: Mutex<zmq::Socket>,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

impl Waker {
    /// Wakes the receiving thread (its `rx` becomes readable).
    pub(crate) fn wake(&self) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(&b""[..], zmq::DONTWAIT);
    }
}

/// A connected pair: the waker and the socket to poll.
pub(crate) fn pair(ctx: &zmq::Context) -> Result<(Waker, zmq::Socket)> {
    let name = format!(
        "inproc://banyan-services-wake-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let rx = ctx.socket(zmq::PAIR).map_err(transport)?;
    rx.bind(&name).map_err(transport)?;
    let tx = ctx.socket(zmq::PAIR).map_err(transport)?;
    tx.set_linger(0).map_err(transport)?;
    tx.connect(&name).map_err(transport)?;
    Ok((Waker { tx: Mutex::new(tx) }, rx))
}
