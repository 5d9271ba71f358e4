//! Waking a thread blocked in `zmq::poll` from another thread: an inproc
//! PAIR socket pair; the sleeping side polls `rx` with its other sockets
//! (or, for the native broker, a `mio` waker).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{transport, Error, Result};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The sending half, shareable between threads.
pub(crate) enum Waker {
    /// An inproc PAIR socket (the sleeping side polls [`pair`]'s socket).
    Zmq(Mutex<zmq::Socket>),
    /// A `mio` waker (the native broker's poll).
    Mio(mio::Waker),
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

impl Waker {
    /// Wakes the receiving thread (its `rx` becomes readable).
    pub(crate) fn wake(&self) {
        match self {
            Waker::Zmq(tx) => {
                let tx = tx.lock().unwrap_or_else(|p| p.into_inner());
                let _ = tx.send(&b""[..], zmq::DONTWAIT);
            }
            Waker::Mio(w) => {
                let _ = w.wake();
            }
        }
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
    Ok((Waker::Zmq(Mutex::new(tx)), rx))
}

/// A thread that polls its [`pair`]'s socket and returns when woken: the
/// broker's and the devices' loops. Dropping it stops and joins it.
#[derive(Debug)]
pub(crate) struct Stoppable {
    what: &'static str,
    waker: Waker,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Stoppable {
    /// Starts `body` on a thread named `name`; `waker` must wake it (its
    /// `pair` socket is in `body`'s poll set). `what` names it in errors.
    pub(crate) fn spawn(
        name: &str,
        what: &'static str,
        waker: Waker,
        body: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<Stoppable> {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(body)
            .map_err(Error::Transport)?;
        Ok(Stoppable {
            what,
            waker,
            thread: Some(thread),
        })
    }

    /// Whether the thread still runs.
    pub(crate) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Wakes the thread to stop, joins it and returns what it returned
    /// (once; later calls return `Ok`).
    pub(crate) fn stop(&mut self) -> Result<()> {
        self.waker.wake();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Transport(std::io::Error::other(format!(
                "the {} thread panicked",
                self.what
            )))),
            None => Ok(()),
        }
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
