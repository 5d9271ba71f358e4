//! The device's services on the services broker (`docs/services.md`): a
//! [`Relay`] serves each service the device declares; the run loop passes
//! the relay's requests to the [`Bridge`] and carries the bridge's
//! [`ServiceAction`]s out (registrations start and stop workers, answers go
//! back to the waiting workers).

use std::os::fd::RawFd;

use banyan_core::link::Instant;
use banyan_services::relay::Relay;
use banyan_services::worker;

use crate::bridge::{Bridge, ServiceAction};

/// The relay of one gateway.
pub(crate) struct Services {
    relay: Relay,
    name: String,
}

impl Services {
    /// Services registered with the broker at `endpoint`.
    ///
    /// # Errors
    /// The relay's wake-up socket pair could not be made.
    pub(crate) fn new(endpoint: &str, name: &str) -> banyan_services::Result<Services> {
        Ok(Services {
            relay: Relay::new(worker::Config::new(endpoint))?,
            name: name.to_owned(),
        })
    }

    /// The descriptor the run loop watches for readability.
    pub(crate) fn fd(&self) -> RawFd {
        self.relay.fd()
    }

    /// Hands the waiting requests to the bridge.
    pub(crate) fn take_requests(&mut self, bridge: &mut Bridge, now: Instant) {
        while let Some(req) = self.relay.take() {
            let budget_ms = u64::try_from(req.budget.as_millis()).unwrap_or(u64::MAX);
            bridge.handle_request(req.ticket, &req.service, &req.body, budget_ms, now);
        }
    }

    /// Carries out the bridge's service actions.
    pub(crate) fn apply(&mut self, bridge: &mut Bridge) {
        while let Some(a) = bridge.take_service_action() {
            match a {
                ServiceAction::Register {
                    service,
                    device_service,
                } => match self.relay.register(&service, &device_service) {
                    Ok(()) => log::info!("{}: serving {service:?}", self.name),
                    Err(e) => log::error!("{}: cannot serve {service:?}: {e}", self.name),
                },
                ServiceAction::Unregister { service } => {
                    if self.relay.unregister(&service) {
                        log::info!("{}: service {service:?} withdrawn", self.name);
                    }
                }
                ServiceAction::Answer { ticket, result } => self.relay.answer(ticket, result),
            }
        }
    }
}
