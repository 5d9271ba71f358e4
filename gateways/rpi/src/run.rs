//! The run loop: binds a [`Gateway`] to the backplane through the
//! component driver ([`banyan_component::driver`]) — the same loop as
//! serial-gateway's. All logic is in the gateway; this only moves messages,
//! reports and the clock, and reacts to the connection.
//!
//! Each turn ticks the gateway (deadman, tones, inputs), hands it a bounded
//! batch of messages, then waits on the component's sockets and the
//! gateway's input-edge wake-up ([`Gateway::wake_fd`]) until its next
//! deadline, so an edge of a watched input is reported as soon as it
//! arrives and a flood of messages cannot hold off the deadman.
//!
//! # Fresh commands
//! The gateway's `run_motors` topic is conflated
//! ([`Component::set_conflate`]): a backlog of motor commands is skipped to
//! the newest (a command is only dropped when a newer one sets every motor
//! it sets), the skipped ones counted as `stale` in the state report. See
//! `docs/rpi-gateway.md`, "Fresh commands".
//!
//! # Services
//! [`run_with_services`] also answers the gateway's [`SERVICES`] through
//! the services broker (`docs/services.md`): a [`Relay`] registers them
//! (see [`register_services`]) and the loop answers each request with
//! [`Gateway::serve`] as soon as the relay's descriptor is readable.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use banyan_component::driver::{self, Driver, Handler, Ready, Watch};
use banyan_component::{self as component, Component, Event};

use banyan_core::robot::StoppedBy;
use banyan_services::relay::Relay;

use super::backend::Backend;
use super::gateway::{Gateway, Report, SERVICES};

fn publish(comp: &mut Component, reports: Vec<Report>) {
    for r in reports {
        if let Err(e) = comp.publish_raw(&r.topic, &r.payload) {
            // Counted by the component (Stats::send_dropped); never fatal.
            log::warn!("report on {} not sent: {e}", r.topic);
        }
    }
}

/// The gateway as a [`Handler`] of the driver.
struct Rpi<'a, B: Backend> {
    gw: &'a mut Gateway<B>,
    relay: Option<&'a mut Relay>,
}

impl<B: Backend> Rpi<'_, B> {
    fn sync_counters(&mut self, comp: &Component) {
        self.gw
            .set_loop_counters(comp.stats().stale, banyan_component::logging::lost());
    }
}

impl<B: Backend> Handler for Rpi<'_, B> {
    fn tick(&mut self, comp: &mut Component, now: Instant) {
        self.sync_counters(comp);
        let reports = self.gw.tick(now);
        publish(comp, reports);
    }

    fn event(&mut self, comp: &mut Component, event: Event, now: Instant) {
        match event {
            Event::Message(m) => {
                self.sync_counters(comp);
                let reports = self.gw.handle(&m.topic, &m.payload, now);
                publish(comp, reports);
            }
            Event::Rejected(rej) => {
                let r = self.gw.error_report(
                    &rej.topic,
                    &format_args!("malformed message: {}", rej.reason),
                );
                publish(comp, vec![r]);
            }
            Event::BackplaneDown => {
                self.gw.stop_motors(StoppedBy::BackplaneLost);
                let r = self.gw.state_report();
                publish(comp, vec![r]);
                log::warn!("backplane lost: motors stopped");
            }
            Event::BackplaneUp => {
                let r = self.gw.state_report();
                publish(comp, vec![r]);
            }
        }
    }

    fn deadline(&self, now: Instant) -> Option<Instant> {
        Some(self.gw.next_deadline(now))
    }

    fn watch(&self, watches: &mut Vec<Watch>) {
        // Readable when an input edge is queued; `tick` clears it.
        if let Some(fd) = self.gw.wake_fd() {
            watches.push(Watch::read(fd));
        }
        if let Some(r) = self.relay.as_ref() {
            watches.push(Watch::read(r.fd()));
        }
    }

    fn ready(&mut self, _comp: &mut Component, index: usize, _ready: Ready, now: Instant) {
        // Watches: the edge wake-up (if any), then the relay.
        if index != usize::from(self.gw.wake_fd().is_some()) {
            return;
        }
        if let Some(relay) = self.relay.as_mut() {
            while let Some(req) = relay.take() {
                let answer = self.gw.serve(&req.service, &req.body, now);
                relay.answer(req.ticket, answer);
            }
        }
    }
}

/// Registers the gateway's [`SERVICES`] with `relay` under `prefix`
/// followed by their names (`rpi-gateway.` gives `rpi-gateway.state`).
///
/// # Errors
/// As [`Relay::register`] (a bad name).
pub fn register_services(relay: &mut Relay, prefix: &str) -> banyan_services::Result<()> {
    for s in SERVICES {
        relay.register(&format!("{prefix}{s}"), s)?;
    }
    Ok(())
}

/// Subscribes to the gateway's topics and runs until `stop` is set: ticks
/// the gateway at its deadlines, hands it every message, publishes its
/// reports, stops the motors when the backplane connection drops. On return
/// the gateway is in the safe state and a final state report is queued.
///
/// # Errors
/// [`component::Error`] when the transport fails (not for bad messages,
/// which get error reports). The gateway is put in the safe state first.
pub fn run<B: Backend>(
    gw: &mut Gateway<B>,
    comp: &mut Component,
    stop: &AtomicBool,
) -> Result<(), component::Error> {
    run_with_services(gw, comp, stop, None)
}

/// [`run`], also answering the requests `relay` takes in (its services
/// registered with [`register_services`]).
///
/// # Errors
/// As [`run`].
pub fn run_with_services<B: Backend>(
    gw: &mut Gateway<B>,
    comp: &mut Component,
    stop: &AtomicBool,
    relay: Option<&mut Relay>,
) -> Result<(), component::Error> {
    let topics: Vec<String> = gw.subscriptions().iter().map(|s| s.to_string()).collect();
    for t in &topics {
        comp.subscribe(t)?;
    }
    comp.set_conflate(&[gw.config().topics.run_motors.as_str()]);
    let mut driver = Driver::new(driver::Config::default());
    let result = driver.run(
        comp,
        &mut Rpi {
            gw: &mut *gw,
            relay,
        },
        stop,
    );
    gw.safe_state(StoppedBy::Exit);
    let last = gw.state_report();
    publish(comp, vec![last]);
    result
}
