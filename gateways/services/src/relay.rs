//! Serving services from a single-threaded run loop (a gateway's): one
//! [`worker`] per service, each in its own thread as [`worker::serve_raw`]
//! runs them, whose handler hands the request to the loop through a
//! channel, wakes the loop through a socket pair the loop polls
//! ([`Relay::fd`]) and waits for the loop's [`Relay::answer`].
//!
//! The loop answers each request it [`take`](Relay::take)s exactly once,
//! at once or later (a serial device's reply); a handler whose answer does
//! not come within the request's budget plus a second gives up with a
//! `worker_error` (the client has its own deadline anyway). Answers to
//! requests whose handler gave up are dropped.
//!
//! ```no_run
//! use banyan_services::relay::Relay;
//! use banyan_services::worker;
//!
//! let mut relay = Relay::new(worker::Config::default())?;
//! relay.register("robot.state", "state")?;
//! // In the run loop, when `relay.fd()` is readable:
//! while let Some(req) = relay.take() {
//!     let reply: Result<Vec<u8>, String> = Ok(vec![0x80]); // {}
//!     relay.answer(req.ticket, reply);
//! }
//! # Ok::<(), banyan_services::Error>(())
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::worker::{self, Failure};

type Answer = Result<Vec<u8>, Failure>;

/// A request waiting for the run loop.
#[derive(Debug)]
pub struct Incoming {
    /// Pass it to [`Relay::answer`].
    pub ticket: u64,
    /// The loop's name of the service (the `local` of
    /// [`Relay::register`]).
    pub service: String,
    /// The body: one msgpack value (checked by the broker).
    pub body: Vec<u8>,
    /// Time left before the client's deadline when the request arrived.
    pub budget: Duration,
}

struct Pending {
    service: String,
    body: Vec<u8>,
    budget: Duration,
    answer: SyncSender<Answer>,
}

/// Workers whose requests a run loop answers. See the [module docs](self).
pub struct Relay {
    config: worker::Config,
    workers: HashMap<String, worker::Handle>,
    tx: Sender<Pending>,
    rx: Receiver<Pending>,
    wake_rx: UnixStream,
    wake_tx: Arc<Mutex<UnixStream>>,
    answers: HashMap<u64, SyncSender<Answer>>,
    next_ticket: u64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("endpoint", &self.config.endpoint)
            .field("services", &self.workers.keys().collect::<Vec<_>>())
            .field("waiting", &self.answers.len())
            .finish()
    }
}

impl Relay {
    /// A relay whose workers use `config` (broker endpoint, heartbeats).
    ///
    /// # Errors
    /// [`Error::Transport`] when the wake-up socket pair cannot be made.
    pub fn new(config: worker::Config) -> Result<Relay> {
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(Error::Transport)?;
        wake_rx.set_nonblocking(true).map_err(Error::Transport)?;
        wake_tx.set_nonblocking(true).map_err(Error::Transport)?;
        let (tx, rx) = mpsc::channel();
        Ok(Relay {
            config,
            workers: HashMap::new(),
            tx,
            rx,
            wake_rx,
            wake_tx: Arc::new(Mutex::new(wake_tx)),
            answers: HashMap::new(),
            next_ticket: 0,
        })
    }

    /// The descriptor to poll for readability: requests are waiting.
    pub fn fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    /// The broker's service names served now.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.workers.keys().map(String::as_str)
    }

    /// Serves `service` on the broker; its requests come out of
    /// [`Relay::take`] named `local`. Serving a name twice is a no-op.
    ///
    /// # Errors
    /// As [`worker::serve_raw`] (bad or reserved name, bad endpoint).
    pub fn register(&mut self, service: &str, local: &str) -> Result<()> {
        if self.workers.contains_key(service) {
            return Ok(());
        }
        let tx = self.tx.clone();
        let wake = Arc::clone(&self.wake_tx);
        let local = local.to_owned();
        let handler = move |req: &worker::Request| {
            let (answer, reply) = mpsc::sync_channel(1);
            let pending = Pending {
                service: local.clone(),
                body: req.body.clone(),
                budget: req.budget,
                answer,
            };
            if tx.send(pending).is_err() {
                return Err(Failure::new("the gateway is stopping"));
            }
            if let Ok(mut w) = wake.lock() {
                // A full socket buffer already wakes the loop.
                let _ = w.write(b"r");
            }
            reply
                .recv_timeout(req.budget + Duration::from_secs(1))
                .unwrap_or_else(|_| Err(Failure::new("the gateway did not answer")))
        };
        let handle = worker::serve_raw(self.config.clone(), service, handler)?;
        self.workers.insert(service.to_owned(), handle);
        Ok(())
    }

    /// Stops serving `service` (in a helper thread: stopping joins the
    /// worker thread, which may be waiting for an answer). Returns whether
    /// it was served.
    pub fn unregister(&mut self, service: &str) -> bool {
        match self.workers.remove(service) {
            Some(handle) => {
                let _ = std::thread::Builder::new()
                    .name("relay-unregister".into())
                    .spawn(move || drop(handle));
                true
            }
            None => false,
        }
    }

    /// The next waiting request (drains the wake-up descriptor).
    pub fn take(&mut self) -> Option<Incoming> {
        let mut sink = [0u8; 64];
        while matches!(self.wake_rx.read(&mut sink), Ok(n) if n > 0) {}
        let p = self.rx.try_recv().ok()?;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.answers.insert(ticket, p.answer);
        Some(Incoming {
            ticket,
            service: p.service,
            body: p.body,
            budget: p.budget,
        })
    }

    /// Answers the request `ticket`: a reply body (one msgpack value) or an
    /// error text for the client (a `worker_error`).
    pub fn answer(&mut self, ticket: u64, result: Result<Vec<u8>, String>) {
        if let Some(tx) = self.answers.remove(&ticket) {
            // The handler may have given up already: nothing to do then.
            let _ = tx.try_send(result.map_err(Failure::new));
        }
    }
}
