//! The device's services on the services broker (`docs/services.md`): one
//! [`banyan_services::worker`] per service the device declares, each in its
//! own thread as the worker module runs them. A worker's handler hands its
//! request to the gateway's run loop through a channel, wakes the loop
//! through a socket pair the loop watches, and waits for the answer; the
//! run loop passes requests to the [`Bridge`] and carries its
//! [`ServiceAction`]s out: registrations start and stop workers, answers go
//! back to the waiting handlers.
//!
//! The bridge answers every request exactly once, before the client's
//! deadline; the handler still gives up at the request's budget plus a
//! second, should the run loop itself be stuck.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_core::link::Instant;
use banyan_services::worker::{self, Failure};

use crate::bridge::{Bridge, ServiceAction};

/// A request on its way from a worker thread to the run loop.
struct Incoming {
    device_service: String,
    body: Vec<u8>,
    budget: Duration,
    answer: SyncSender<Result<Vec<u8>, Failure>>,
}

/// The workers of one gateway and the way back from them.
pub(crate) struct Services {
    config: worker::Config,
    workers: HashMap<String, worker::Handle>,
    tx: Sender<Incoming>,
    rx: Receiver<Incoming>,
    wake_rx: UnixStream,
    wake_tx: Arc<Mutex<UnixStream>>,
    answers: HashMap<u64, SyncSender<Result<Vec<u8>, Failure>>>,
    next_ticket: u64,
    name: String,
}

impl Services {
    /// Services registered with the broker at `endpoint`.
    ///
    /// # Errors
    /// The socket pair could not be created (out of descriptors).
    pub(crate) fn new(endpoint: &str, name: &str) -> std::io::Result<Services> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        Ok(Services {
            config: worker::Config::new(endpoint),
            workers: HashMap::new(),
            tx,
            rx,
            wake_rx,
            wake_tx: Arc::new(Mutex::new(wake_tx)),
            answers: HashMap::new(),
            next_ticket: 0,
            name: name.to_owned(),
        })
    }

    /// The descriptor the run loop watches for readability.
    pub(crate) fn fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    /// The wake-up descriptor is readable: hands the waiting requests to
    /// the bridge.
    pub(crate) fn take_requests(&mut self, bridge: &mut Bridge, now: Instant) {
        let mut sink = [0u8; 64];
        while matches!(self.wake_rx.read(&mut sink), Ok(n) if n > 0) {}
        while let Ok(inc) = self.rx.try_recv() {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            self.answers.insert(ticket, inc.answer);
            let budget_ms = u64::try_from(inc.budget.as_millis()).unwrap_or(u64::MAX);
            bridge.handle_request(ticket, &inc.device_service, &inc.body, budget_ms, now);
        }
    }

    /// Carries out the bridge's service actions.
    pub(crate) fn apply(&mut self, bridge: &mut Bridge) {
        while let Some(a) = bridge.take_service_action() {
            match a {
                ServiceAction::Register {
                    service,
                    device_service,
                } => self.register(service, device_service),
                ServiceAction::Unregister { service } => {
                    if let Some(handle) = self.workers.remove(&service) {
                        log::info!("{}: service {service:?} withdrawn", self.name);
                        // Stopping joins the worker thread: not in the run
                        // loop. Its request in hand, if any, was answered.
                        let _ = std::thread::Builder::new()
                            .name("serial-unserve".into())
                            .spawn(move || drop(handle));
                    }
                }
                ServiceAction::Answer { ticket, result } => {
                    if let Some(tx) = self.answers.remove(&ticket) {
                        // The handler may have given up already: nothing to do.
                        let _ = tx.try_send(result.map_err(Failure::new));
                    }
                }
            }
        }
    }

    fn register(&mut self, service: String, device_service: String) {
        if self.workers.contains_key(&service) {
            return;
        }
        let tx = self.tx.clone();
        let wake = Arc::clone(&self.wake_tx);
        let handler = move |req: &worker::Request| {
            let (answer, reply) = mpsc::sync_channel(1);
            let inc = Incoming {
                device_service: device_service.clone(),
                body: req.body.clone(),
                budget: req.budget,
                answer,
            };
            if tx.send(inc).is_err() {
                return Err(Failure::new("serial-gateway is stopping"));
            }
            if let Ok(mut w) = wake.lock() {
                let _ = w.write(b"r");
            }
            reply
                .recv_timeout(req.budget + Duration::from_secs(1))
                .unwrap_or_else(|_| Err(Failure::new("serial-gateway did not answer")))
        };
        match worker::serve_raw(self.config.clone(), &service, handler) {
            Ok(handle) => {
                log::info!(
                    "{}: serving {service:?} on {}",
                    self.name,
                    self.config.endpoint
                );
                self.workers.insert(service, handle);
            }
            Err(e) => log::error!("{}: cannot serve {service:?}: {e}", self.name),
        }
    }
}
