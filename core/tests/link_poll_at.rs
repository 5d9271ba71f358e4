//! `Gateway::poll_at` never asks to be woken in the past while idle (a run
//! loop that waits until `poll_at` would otherwise spin).

use banyan_core::link::{Config, Device, Gateway, Instant};

fn shuttle(dev: &mut Device, gw: &mut Gateway, now: Instant) {
    let mut buf = [0u8; 1100];
    for _ in 0..8 {
        while let Some(n) = dev.poll_transmit(now, &mut buf) {
            let mut input = &buf[..n];
            while let (Some(_), rest) = gw.handle_rx(input, now) {
                input = rest;
            }
        }
        while let Some(n) = gw.poll_transmit(now, &mut buf) {
            let mut input = &buf[..n];
            while let (Some(_), rest) = dev.handle_rx(input, now) {
                input = rest;
            }
        }
    }
}

#[test]
fn gateway_poll_at_follows_heartbeat_and_timeout() {
    let cfg = Config::default();
    let mut gw: Gateway = Gateway::new(9, cfg);
    assert_eq!(gw.poll_at(), None, "no timer before the device shows up");
    let mut dev: Device = Device::new("d", "1", 1, cfg).unwrap();
    shuttle(&mut dev, &mut gw, Instant::from_millis(0));
    assert!(gw.is_up());
    // After its heartbeat went out, the next one is due one interval later.
    let at = gw.poll_at().expect("timer while up");
    assert!(at.millis() > 0 && at.millis() <= u64::from(cfg.heartbeat_interval_ms));
    // The device goes silent. At 300 ms (past last_rx + heartbeat) the
    // gateway sends its heartbeat; then poll_at must be in the future.
    let t = Instant::from_millis(300);
    let mut buf = [0u8; 1100];
    while gw.poll_transmit(t, &mut buf).is_some() {}
    assert!(gw.poll(t).is_none());
    assert!(gw.poll_at().unwrap() > t, "{:?} <= {t:?}", gw.poll_at());
    // Timeout: down, and no timer any more.
    let t = Instant::from_millis(u64::from(cfg.timeout_ms) + 1);
    assert!(gw.poll(t).is_some());
    assert!(!gw.is_up());
    assert_eq!(gw.poll_at(), None);
}
