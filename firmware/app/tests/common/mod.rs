//! Fakes shared by the host tests: UART, motors, LEDs and the gateway end of
//! the link with owned events.
#![allow(dead_code)] // each test binary uses a different part

use banyan_core::actuator::{self, SetBrightness, SetSpeed};
use banyan_core::link::{gateway, Config, Gateway, Instant};
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

/// A motor whose speed the test can watch; `fail` makes writes fail.
#[derive(Clone, Default)]
pub struct FakeMotor {
    pub speed: Rc<Cell<f32>>,
    pub fail: Rc<Cell<bool>>,
}

impl SetSpeed for FakeMotor {
    type Error = actuator::Error<&'static str, &'static str>;
    fn set_speed(&mut self, speed: f32) -> Result<(), Self::Error> {
        if !(-1.0..=1.0).contains(&speed) {
            return Err(actuator::Error::InvalidSpeed);
        }
        if self.fail.get() {
            return Err(actuator::Error::Pwm("broken"));
        }
        self.speed.set(speed);
        Ok(())
    }
    fn stop(&mut self) -> Result<(), Self::Error> {
        self.speed.set(0.0);
        Ok(())
    }
}

#[derive(Clone, Default)]
pub struct FakeLed {
    pub level: Rc<Cell<f32>>,
    pub fail: Rc<Cell<bool>>,
}

impl SetBrightness for FakeLed {
    type Error = &'static str;
    fn set_brightness(&mut self, b: f32) -> Result<(), &'static str> {
        if self.fail.get() {
            return Err("broken");
        }
        self.level.set(b);
        Ok(())
    }
}

/// An in-memory UART: `rx` is what the peer sent, `tx` what the app wrote.
/// `tx_room` limits how many bytes one `write` accepts (like a FIFO).
pub struct FakeUart {
    pub rx: VecDeque<u8>,
    pub tx: Vec<u8>,
    pub tx_room: usize,
}

impl Default for FakeUart {
    fn default() -> Self {
        Self {
            rx: VecDeque::new(),
            tx: Vec::new(),
            tx_room: 16,
        }
    }
}

impl embedded_io::ErrorType for FakeUart {
    type Error = core::convert::Infallible;
}
impl embedded_io::Read for FakeUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.rx.len());
        for b in buf.iter_mut().take(n) {
            *b = self.rx.pop_front().unwrap();
        }
        Ok(n)
    }
}
impl embedded_io::ReadReady for FakeUart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.rx.is_empty())
    }
}
impl embedded_io::Write for FakeUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.tx_room);
        self.tx.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
impl embedded_io::WriteReady for FakeUart {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.tx_room > 0)
    }
}

/// A gateway event with owned data.
#[derive(Debug, Clone, PartialEq)]
pub enum GwEvent {
    Up {
        name: String,
        version: String,
        session: u32,
        credits: u8,
    },
    Reset(u32),
    Down,
    Subscribe(String),
    Unsubscribe(String),
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    Serve(String),
    #[cfg(feature = "services")]
    Reply {
        id: u32,
        status: u8,
        body: Vec<u8>,
    },
}

/// The gateway end of the link, collecting events.
pub struct GwSide {
    pub gw: Gateway<1024, 4096, 32>,
    pub events: Vec<GwEvent>,
}

impl GwSide {
    pub fn new(session: u32) -> Self {
        Self {
            gw: Gateway::new(session, Config::default()),
            events: Vec::new(),
        }
    }

    fn push(events: &mut Vec<GwEvent>, ev: gateway::Event<'_>) {
        let owned = match ev {
            gateway::Event::Up(id) => GwEvent::Up {
                name: id.name.as_str().to_owned(),
                version: id.version.as_str().to_owned(),
                session: id.session,
                credits: id.credits,
            },
            gateway::Event::Reset(id) => GwEvent::Reset(id.session),
            gateway::Event::Down => GwEvent::Down,
            gateway::Event::Subscribe(t) => GwEvent::Subscribe(t.to_owned()),
            gateway::Event::Unsubscribe(t) => GwEvent::Unsubscribe(t.to_owned()),
            gateway::Event::Publish { topic, payload } => GwEvent::Publish {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            },
            gateway::Event::Serve(s) => GwEvent::Serve(s.to_owned()),
            #[cfg(feature = "services")]
            gateway::Event::Reply { id, status, body } => GwEvent::Reply {
                id,
                status,
                body: body.to_vec(),
            },
            _ => return,
        };
        events.push(owned);
    }

    /// Feeds bytes from the device.
    pub fn feed(&mut self, mut input: &[u8], now: u64) {
        let now = Instant::from_millis(now);
        loop {
            let (ev, rest) = self.gw.handle_rx(input, now);
            input = rest;
            let Some(ev) = ev else { break };
            Self::push(&mut self.events, ev);
        }
    }

    /// Runs timers and returns the bytes the gateway sends now.
    pub fn transmit(&mut self, now: u64) -> Vec<u8> {
        let now = Instant::from_millis(now);
        if let Some(ev) = self.gw.poll(now) {
            Self::push(&mut self.events, ev);
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 1100];
        while let Some(n) = self.gw.poll_transmit(now, &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Takes the events collected so far.
    pub fn take(&mut self) -> Vec<GwEvent> {
        std::mem::take(&mut self.events)
    }

    /// The payloads published by the device on `topic`, taken from the events.
    pub fn take_published(&mut self, topic: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            GwEvent::Publish { topic: t, payload } if t == topic => {
                out.push(payload.clone());
                false
            }
            _ => true,
        });
        out
    }
}

/// msgpack bytes → rmpv value (the whole input must be one value).
pub fn unpack(bytes: &[u8]) -> rmpv::Value {
    let mut r = bytes;
    let v = rmpv::decode::read_value(&mut r).unwrap();
    assert!(r.is_empty(), "trailing bytes in report");
    v
}

/// rmpv value → msgpack bytes.
pub fn pack(v: &rmpv::Value) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).unwrap();
    buf
}

/// A map with str keys.
pub fn map(entries: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    )
}

/// The value at `key` of a map.
pub fn field<'v>(v: &'v rmpv::Value, key: &str) -> &'v rmpv::Value {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}
