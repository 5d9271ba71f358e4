//! The in-memory wire of the bridge unit tests: the core's `link::Device`
//! as the fake MCU, bytes shuttled both ways within one process.

use super::*;
use banyan_core::link::{self, Device};

/// The fake MCU of the bridge tests.
pub(crate) type Dev = Device<256, 512, 4, 8>;

/// The fake MCU the rigs start with: `fake-mcu` 1.2.3, session `session`.
pub(crate) fn fake_mcu(session: u32) -> Dev {
    Dev::new("fake-mcu", "1.2.3", session, link::Config::default()).unwrap()
}

/// The rigs' bridge (gateway id 0xBEEF) with its transport open.
pub(crate) fn open_bridge(cfg: BridgeConfig) -> Bridge {
    let mut bridge = Bridge::new(0xBEEF, cfg);
    bridge.transport_opened();
    bridge
}

/// Fault injection on the device → gateway bytes.
pub(crate) type Filter = dyn FnMut(&mut Vec<u8>);

/// One turn of the wire: polls the bridge, hands its bytes to the device,
/// runs `device_app`, passes the device's bytes through `filter` (fault
/// injection) to the bridge and polls it again. Returns whether any byte
/// moved: call it (and take the bridge's output) until it returns `false`.
pub(crate) fn exchange(
    bridge: &mut Bridge,
    dev: &mut Dev,
    now: Instant,
    device_app: impl FnOnce(&mut Dev),
    filter: Option<&mut Filter>,
) -> bool {
    let mut buf = vec![0u8; TX_FRAME];
    bridge.poll(now);
    let mut to_dev = Vec::new();
    while let Some(n) = bridge.poll_transmit(now, &mut buf) {
        to_dev.extend_from_slice(&buf[..n]);
    }
    let _ = dev.poll(now);
    let mut moved = !to_dev.is_empty();
    let mut input = &to_dev[..];
    while let (Some(_), rest) = dev.handle_rx(input, now) {
        input = rest;
    }
    device_app(dev);
    let mut to_gw = Vec::new();
    while let Some(n) = dev.poll_transmit(now, &mut buf) {
        to_gw.extend_from_slice(&buf[..n]);
    }
    if let Some(f) = filter {
        f(&mut to_gw);
    }
    moved |= !to_gw.is_empty();
    bridge.handle_device_bytes(&to_gw, now);
    bridge.poll(now);
    moved
}

/// Calls `round` (one [`exchange`] and taking the bridge's output; `true`
/// when bytes moved) until a round moves nothing, at most 64 times.
pub(crate) fn until_quiet(mut round: impl FnMut() -> bool) {
    for _ in 0..64 {
        if !round() {
            return;
        }
    }
}

/// A bridge test rig on a simulated millisecond clock.
pub(crate) trait Clocked {
    /// The clock, in ms.
    fn now_mut(&mut self) -> &mut u64;

    /// Shuttles bytes both ways until both ends are quiet.
    fn settle(&mut self);

    /// Advances time in `step` ms increments, settling each time.
    fn run_for(&mut self, ms: u64, step: u64) {
        let end = *self.now_mut() + ms;
        while *self.now_mut() < end {
            *self.now_mut() += step;
            self.settle();
        }
    }
}
