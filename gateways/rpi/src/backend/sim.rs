//! The simulated backend: in-memory pins implementing `embedded-hal` 1.0.
//!
//! A [`SimBoard`] holds the state of all 28 BCM pins (mode, output level,
//! duty cycle, PWM frequency, input level) and an I2C bus with a simulated
//! 256-byte EEPROM at address [`EEPROM_ADDR`]. Every change is appended to a
//! bounded change log and, with [`SimBoard::set_echo`], printed to stderr.
//! Clones share the board, so tests keep one clone to observe (and to drive
//! inputs with [`SimBoard::set_input`]) while the gateway owns the pins.
//!
//! Inputs are watched ([`Backend::watch`]): driving a watched input to a new
//! level with [`SimBoard::set_input`] pushes the edge to the gateway at once,
//! so tests see interrupt-driven reports without waiting.
//! [`SimBackend::polling`] makes a backend that does not watch (the gateway
//! then polls, as it does with a backend without interrupts).
//!
//! Use it off a Pi, in tests and in the demo; it has no timing behaviour.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_hal::i2c::{self, ErrorKind, NoAcknowledgeSource, Operation};
use embedded_hal::pwm::{self, SetDutyCycle};

use super::{Backend, EdgeSink, Error, Pull};
use crate::config::MAX_BCM_PIN;

/// I2C address of the simulated 24C02-style EEPROM (256 bytes; a write's
/// first byte sets the address pointer, reads continue from it).
pub const EEPROM_ADDR: u8 = 0x50;

/// Duty resolution of [`SimPwm`] (`max_duty_cycle`).
pub const PWM_RESOLUTION: u16 = 10_000;

/// Changes kept in the log.
const LOG_CAPACITY: usize = 4096;

/// What a pin is configured as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Never configured, or released.
    #[default]
    Unused,
    /// Digital output.
    Output,
    /// Digital input, floating.
    Input,
    /// Digital input with pull-up.
    InputPullup,
    /// PWM output.
    Pwm,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Unused => "unused",
            Mode::Output => "output",
            Mode::Input => "input",
            Mode::InputPullup => "input_pullup",
            Mode::Pwm => "pwm",
        })
    }
}

/// One pin's simulated state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PinState {
    /// Configuration.
    pub mode: Mode,
    /// Output level (digital outputs).
    pub level: bool,
    /// Duty cycle as a fraction 0.0–1.0 (PWM outputs).
    pub duty: f32,
    /// PWM frequency in Hz (PWM outputs).
    pub frequency_hz: u32,
    /// Level an input reads (set by [`SimBoard::set_input`]; pull-ups read
    /// high until driven).
    pub input: bool,
}

/// One logged change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// BCM pin (`None` for I2C).
    pub pin: Option<u8>,
    /// Human-readable description, e.g. `mode pwm 1000 Hz`, `duty 0.500`.
    pub what: String,
}

#[derive(Debug)]
struct BoardState {
    pins: [PinState; MAX_BCM_PIN as usize + 1],
    log: VecDeque<Change>,
    changes: u64,
    echo: bool,
    eeprom: [u8; 256],
    eeprom_ptr: u8,
    i2c_devices: BTreeMap<u8, ()>,
    /// The sink of each watched input.
    watchers: Vec<Option<EdgeSink>>,
}

/// A simulated board; clones share state.
#[derive(Debug, Clone)]
pub struct SimBoard(Arc<Mutex<BoardState>>);

impl Default for SimBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl SimBoard {
    /// A board with every pin unused and the EEPROM (all `0xFF`) on I2C.
    pub fn new() -> Self {
        let mut i2c_devices = BTreeMap::new();
        i2c_devices.insert(EEPROM_ADDR, ());
        Self(Arc::new(Mutex::new(BoardState {
            pins: [PinState::default(); MAX_BCM_PIN as usize + 1],
            log: VecDeque::new(),
            changes: 0,
            echo: false,
            eeprom: [0xFF; 256],
            eeprom_ptr: 0,
            i2c_devices,
            watchers: vec![None; usize::from(MAX_BCM_PIN) + 1],
        })))
    }

    fn lock(&self) -> MutexGuard<'_, BoardState> {
        // A panic elsewhere must not make the board unreadable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prints every change to stderr as `sim: GPIO18 duty 0.500`.
    pub fn set_echo(&self, on: bool) {
        self.lock().echo = on;
    }

    /// The state of `pin` (a pin above 27 reads as an unused one).
    pub fn pin(&self, pin: u8) -> PinState {
        self.lock()
            .pins
            .get(usize::from(pin))
            .copied()
            .unwrap_or_default()
    }

    /// All pins' states, index = BCM number.
    pub fn pins(&self) -> Vec<PinState> {
        self.lock().pins.to_vec()
    }

    /// Number of changes since the board was made.
    pub fn change_count(&self) -> u64 {
        self.lock().changes
    }

    /// The most recent changes (up to 4096), oldest first.
    pub fn log(&self) -> Vec<Change> {
        self.lock().log.iter().cloned().collect()
    }

    /// Drives the level an input pin reads (a button press in tests). When
    /// the pin is watched and the level changes, the edge is pushed now,
    /// timestamped `Instant::now()`.
    pub fn set_input(&self, pin: u8, level: bool) {
        self.set_input_at(pin, level, Instant::now());
    }

    /// [`set_input`](Self::set_input) with the edge timestamped `at`.
    pub fn set_input_at(&self, pin: u8, level: bool, at: Instant) {
        let sink = {
            let mut s = self.lock();
            let i = usize::from(pin);
            let Some(state) = s.pins.get_mut(i) else {
                return; // no such pin
            };
            let changed = state.input != level;
            state.input = level;
            record(
                &mut s,
                Some(pin),
                format!("input driven {}", u8::from(level)),
            );
            s.watchers.get(i).cloned().flatten().filter(|_| changed)
        };
        // Pushed without the board locked: the sink has its own lock.
        if let Some(sink) = sink {
            sink.push(level, at);
        }
    }

    /// Whether `pin` is watched for edges.
    pub fn is_watched(&self, pin: u8) -> bool {
        self.lock()
            .watchers
            .get(usize::from(pin))
            .is_some_and(Option::is_some)
    }

    /// The simulated EEPROM's contents.
    pub fn eeprom(&self) -> [u8; 256] {
        self.lock().eeprom
    }

    fn update(&self, pin: u8, f: impl FnOnce(&mut PinState) -> Option<String>) {
        let mut s = self.lock();
        let Some(state) = s.pins.get_mut(usize::from(pin)) else {
            return;
        };
        if let Some(what) = f(state) {
            record(&mut s, Some(pin), what);
        }
    }
}

fn record(s: &mut BoardState, pin: Option<u8>, what: String) {
    if s.echo {
        match pin {
            Some(p) => log::info!(target: "banyan::sim", "sim: GPIO{p} {what}"),
            None => log::info!(target: "banyan::sim", "sim: I2C {what}"),
        }
    }
    s.changes += 1;
    if s.log.len() == LOG_CAPACITY {
        s.log.pop_front();
    }
    s.log.push_back(Change { pin, what });
}

/// The simulated backend.
#[derive(Debug, Clone)]
pub struct SimBackend {
    board: SimBoard,
    watch: bool,
}

impl SimBackend {
    /// A backend on `board` (keep a clone of the board to observe it) that
    /// watches inputs.
    pub fn new(board: SimBoard) -> Self {
        Self { board, watch: true }
    }

    /// A backend on `board` that cannot watch inputs, like a GPIO without
    /// interrupts: the gateway polls them.
    pub fn polling(board: SimBoard) -> Self {
        Self {
            board,
            watch: false,
        }
    }

    /// The board.
    pub fn board(&self) -> &SimBoard {
        &self.board
    }
}

fn check(pin: u8) -> Result<(), Error> {
    if pin > MAX_BCM_PIN {
        return Err(Error::Io(format!("GPIO {pin} does not exist")));
    }
    Ok(())
}

impl Backend for SimBackend {
    type Output = SimOutput;
    type Input = SimInput;
    type Pwm = SimPwm;
    type I2c = SimI2c;

    fn name(&self) -> &'static str {
        "sim"
    }

    fn output(&mut self, pin: u8) -> Result<SimOutput, Error> {
        check(pin)?;
        self.board.update(pin, |p| {
            *p = PinState {
                mode: Mode::Output,
                level: false,
                input: p.input,
                ..PinState::default()
            };
            Some("mode output, low".into())
        });
        Ok(SimOutput {
            pin,
            board: self.board.clone(),
        })
    }

    fn input(&mut self, pin: u8, pull: Pull) -> Result<SimInput, Error> {
        check(pin)?;
        self.board.update(pin, |p| {
            let mode = match pull {
                Pull::None => Mode::Input,
                Pull::Up => Mode::InputPullup,
            };
            *p = PinState {
                mode,
                input: pull == Pull::Up || p.input,
                ..PinState::default()
            };
            Some(format!("mode {mode}"))
        });
        Ok(SimInput {
            pin,
            board: self.board.clone(),
        })
    }

    fn pwm(&mut self, pin: u8, frequency_hz: u32) -> Result<SimPwm, Error> {
        check(pin)?;
        self.board.update(pin, |p| {
            *p = PinState {
                mode: Mode::Pwm,
                frequency_hz,
                input: p.input,
                ..PinState::default()
            };
            Some(format!("mode pwm {frequency_hz} Hz"))
        });
        Ok(SimPwm {
            pin,
            board: self.board.clone(),
        })
    }

    fn i2c(&mut self) -> Result<SimI2c, Error> {
        Ok(SimI2c {
            board: self.board.clone(),
        })
    }

    fn watch(&mut self, pin: u8, input: &mut SimInput, sink: EdgeSink) -> Result<bool, Error> {
        if !self.watch {
            return Ok(false);
        }
        if input.pin != pin {
            return Err(Error::Io(format!(
                "GPIO {pin}: watch asked with the input of GPIO {}",
                input.pin
            )));
        }
        match self.board.lock().watchers.get_mut(usize::from(pin)) {
            Some(w) => *w = Some(sink),
            None => return Err(Error::Io(format!("GPIO {pin}: no such pin"))),
        }
        Ok(true)
    }
}

fn release(board: &SimBoard, pin: u8) {
    if let Some(w) = board.lock().watchers.get_mut(usize::from(pin)) {
        *w = None;
    }
    board.update(pin, |p| {
        p.mode = Mode::Unused;
        Some("released".into())
    });
}

/// A simulated output pin.
#[derive(Debug)]
pub struct SimOutput {
    pin: u8,
    board: SimBoard,
}

impl digital::ErrorType for SimOutput {
    type Error = Infallible;
}

impl SimOutput {
    fn set(&mut self, level: bool) {
        self.board.update(self.pin, |p| {
            (p.level != level).then(|| {
                p.level = level;
                format!("level {}", u8::from(level))
            })
        });
    }
}

impl OutputPin for SimOutput {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.set(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.set(true);
        Ok(())
    }
}

impl Drop for SimOutput {
    fn drop(&mut self) {
        release(&self.board, self.pin);
    }
}

/// A simulated input pin.
#[derive(Debug)]
pub struct SimInput {
    pin: u8,
    board: SimBoard,
}

impl digital::ErrorType for SimInput {
    type Error = Infallible;
}

impl InputPin for SimInput {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.board.pin(self.pin).input)
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.board.pin(self.pin).input)
    }
}

impl Drop for SimInput {
    fn drop(&mut self) {
        release(&self.board, self.pin);
    }
}

/// A simulated PWM output.
#[derive(Debug)]
pub struct SimPwm {
    pin: u8,
    board: SimBoard,
}

impl pwm::ErrorType for SimPwm {
    type Error = Infallible;
}

impl SetDutyCycle for SimPwm {
    fn max_duty_cycle(&self) -> u16 {
        PWM_RESOLUTION
    }
    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Infallible> {
        let frac = f32::from(duty.min(PWM_RESOLUTION)) / f32::from(PWM_RESOLUTION);
        self.board.update(self.pin, |p| {
            (p.duty != frac).then(|| {
                p.duty = frac;
                format!("duty {frac:.3}")
            })
        });
        Ok(())
    }
}

impl Drop for SimPwm {
    fn drop(&mut self) {
        release(&self.board, self.pin);
    }
}

/// I2C error of the simulator: nothing answers at that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimI2cError;

impl i2c::Error for SimI2cError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    }
}

/// The simulated I2C bus (one EEPROM at [`EEPROM_ADDR`]).
#[derive(Debug)]
pub struct SimI2c {
    board: SimBoard,
}

impl i2c::ErrorType for SimI2c {
    type Error = SimI2cError;
}

impl i2c::I2c for SimI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), SimI2cError> {
        let mut s = self.board.lock();
        if !s.i2c_devices.contains_key(&address) {
            return Err(SimI2cError);
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    if let Some((&ptr, data)) = bytes.split_first() {
                        s.eeprom_ptr = ptr;
                        for &b in data {
                            let at = usize::from(s.eeprom_ptr);
                            if let Some(cell) = s.eeprom.get_mut(at) {
                                *cell = b;
                            }
                            s.eeprom_ptr = s.eeprom_ptr.wrapping_add(1);
                        }
                        if !data.is_empty() {
                            let what = format!("0x{address:02x} write @{ptr} {data:?}");
                            record(&mut s, None, what);
                        }
                    }
                }
                Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = s
                            .eeprom
                            .get(usize::from(s.eeprom_ptr))
                            .copied()
                            .unwrap_or(0xFF);
                        s.eeprom_ptr = s.eeprom_ptr.wrapping_add(1);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::I2c;

    #[test]
    fn pins_record_state_and_log() {
        let board = SimBoard::new();
        let mut b = SimBackend::new(board.clone());
        let mut out = b.output(17).unwrap();
        out.set_high().unwrap();
        assert_eq!(board.pin(17).mode, Mode::Output);
        assert!(board.pin(17).level);
        let mut pwm = b.pwm(18, 1000).unwrap();
        pwm.set_duty_cycle_fraction(1, 2).unwrap();
        assert_eq!(board.pin(18).duty, 0.5);
        assert_eq!(board.pin(18).frequency_hz, 1000);
        drop(out);
        assert_eq!(board.pin(17).mode, Mode::Unused);
        let log = board.log();
        assert!(log
            .iter()
            .any(|c| c.pin == Some(18) && c.what == "duty 0.500"));
        // Unchanged writes are not logged.
        let n = board.change_count();
        pwm.set_duty_cycle_fraction(1, 2).unwrap();
        assert_eq!(board.change_count(), n);
    }

    #[test]
    fn inputs_read_driven_level_and_pullup() {
        let board = SimBoard::new();
        let mut b = SimBackend::new(board.clone());
        let mut i = b.input(4, Pull::Up).unwrap();
        assert!(i.is_high().unwrap());
        board.set_input(4, false);
        assert!(i.is_low().unwrap());
        assert!(b.output(28).is_err());
    }

    #[test]
    fn eeprom_write_then_read() {
        let board = SimBoard::new();
        let mut bus = SimBackend::new(board.clone()).i2c().unwrap();
        bus.write(EEPROM_ADDR, &[0x10, 1, 2, 3]).unwrap();
        let mut buf = [0u8; 3];
        bus.write_read(EEPROM_ADDR, &[0x10], &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(&board.eeprom()[0x10..0x13], &[1, 2, 3]);
        assert_eq!(bus.write(0x20, &[0]), Err(SimI2cError));
    }
}
