//! Banyan's OneGPIO command vocabulary.

use super::{int, top_map, uint, Error};
use crate::msg::{ArrayRef, MapRef, Value};
use heapless::Vec;

/// The pin a OneGPIO command addresses: a pin number, a tag naming a pin,
/// or both (at least one is present).
///
/// Python Banyan's gateways resolve tags: a command carrying a known `tag`
/// acts on the pin that tag was first given with; a command carrying a new
/// `tag` and a `pin` registers the tag. Resolution is the gateway's job, so
/// both are exposed as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PinRef<'a> {
    /// The `pin` field, if present.
    pub pin: Option<u8>,
    /// The `tag` field, if present and non-empty.
    pub tag: Option<&'a str>,
}

/// A OneGPIO command, as sent on `to_rpi_gateway` / `to_arduino_gateway`:
/// a map whose `command` key names the variant, with its fields beside it.
///
/// Every variant that addresses one pin carries a [`PinRef`] (field `pin`
/// and/or `tag`). Extra keys are ignored (Banyan clients add their own).
/// Field names and value types follow python-banyan 3.17's `gateway_base`
/// vocabulary; pin numbers are `u8`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum OneGpio<'a> {
    /// `analog_write{pin, value}`: a DAC/PWM level, 0–65535.
    AnalogWrite {
        /// Target pin.
        pin: PinRef<'a>,
        /// Level.
        value: u16,
    },
    /// `digital_write{pin, value}`: value 0/1 or a bool.
    DigitalWrite {
        /// Target pin.
        pin: PinRef<'a>,
        /// Level.
        value: bool,
    },
    /// `pwm_write{pin, value}`: duty 0–255.
    PwmWrite {
        /// Target pin.
        pin: PinRef<'a>,
        /// Duty cycle, 255 = always on.
        value: u8,
    },
    /// `servo_position{pin, position}`: angle 0–180 degrees.
    ServoPosition {
        /// Target pin.
        pin: PinRef<'a>,
        /// Angle in degrees.
        position: u8,
    },
    /// `set_mode_digital_output{pin}`.
    SetModeDigitalOutput {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `set_mode_digital_input{pin}`.
    SetModeDigitalInput {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `set_mode_digital_input_pullup{pin}`.
    SetModeDigitalInputPullup {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `set_mode_pwm{pin}`.
    SetModePwm {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `set_mode_servo{pin}`.
    SetModeServo {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `set_mode_analog_input{pin}`.
    SetModeAnalogInput {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `set_mode_tone{pin}`.
    SetModeTone {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `set_mode_i2c{}`.
    SetModeI2c,
    /// `enable_digital_reporting{pin}`.
    EnableDigitalReporting {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `disable_digital_reporting{pin}`.
    DisableDigitalReporting {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `enable_analog_reporting{pin}`.
    EnableAnalogReporting {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `disable_analog_reporting{pin}`.
    DisableAnalogReporting {
        /// Target pin.
        pin: PinRef<'a>,
    },
    /// `i2c_read{addr, register, number_of_bytes}`; `register` may be nil.
    I2cRead {
        /// 7-bit device address (0–127).
        addr: u8,
        /// Register to read from, or `None` for a plain read.
        register: Option<u8>,
        /// Bytes to read (1–255).
        number_of_bytes: u8,
    },
    /// `i2c_write{addr, data}`: `data` is an array of ints 0–255.
    I2cWrite {
        /// 7-bit device address (0–127).
        addr: u8,
        /// The bytes to write, checked to be ints 0–255.
        data: I2cData<'a>,
    },
    /// `play_tone{pin, freq, duration}`.
    PlayTone {
        /// Target pin.
        pin: PinRef<'a>,
        /// Frequency in Hz.
        freq: u32,
        /// Duration in milliseconds.
        duration: u32,
    },
    /// `set_mode_sonar{trigger_pin, echo_pin}`.
    SetModeSonar {
        /// Trigger output pin.
        trigger_pin: u8,
        /// Echo input pin.
        echo_pin: u8,
    },
    /// `set_mode_stepper{pins, steps_per_revolution}`: 2 or 4 pins.
    SetModeStepper {
        /// Coil pins in order.
        pins: Vec<u8, 4>,
        /// Steps per full revolution.
        steps_per_revolution: u32,
    },
    /// `stepper_write{number_of_steps, motor_speed}`: negative steps reverse.
    StepperWrite {
        /// Steps to move (signed).
        number_of_steps: i32,
        /// Speed in RPM.
        motor_speed: u32,
    },
}

/// The `data` array of an `i2c_write` command: validated ints 0–255, read lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct I2cData<'a>(ArrayRef<'a>);

impl<'a> I2cData<'a> {
    /// Largest accepted `data` length.
    pub const MAX_LEN: usize = 255;

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes in order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + 'a {
        self.0
            .iter()
            .filter_map(|v| v.as_u64().and_then(|u| u8::try_from(u).ok()))
    }

    /// Copies the bytes into `out`, returning how many were copied (at most `out.len()`).
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        out.iter_mut().zip(self.iter()).map(|(o, b)| *o = b).count()
    }
}

/// Every field name any OneGPIO command reads.
const FIELDS: [&str; 17] = [
    "command",
    "pin",
    "tag",
    "value",
    "position",
    "addr",
    "register",
    "number_of_bytes",
    "data",
    "freq",
    "duration",
    "trigger_pin",
    "echo_pin",
    "pins",
    "steps_per_revolution",
    "number_of_steps",
    "motor_speed",
];

/// The command map's known fields, collected in one pass (the last of
/// duplicate keys wins, as in a Python dict); other keys are ignored.
struct Fields<'a>([Option<Value<'a>>; FIELDS.len()]);

impl<'a> Fields<'a> {
    fn new(map: MapRef<'a>) -> Self {
        let mut slots = [None; FIELDS.len()];
        for (k, v) in map.iter() {
            if let Some(i) = k.as_str().and_then(|k| FIELDS.iter().position(|f| *f == k)) {
                slots[i] = Some(v);
            }
        }
        Self(slots)
    }

    fn get(&self, name: &'static str) -> Option<Value<'a>> {
        let i = FIELDS.iter().position(|f| *f == name)?;
        self.0[i]
    }

    fn req(&self, name: &'static str) -> Result<Value<'a>, Error<'a>> {
        self.get(name).ok_or(Error::MissingField(name))
    }

    fn u8(&self, name: &'static str) -> Result<u8, Error<'a>> {
        uint(name, &self.req(name)?)
    }

    fn u32(&self, name: &'static str) -> Result<u32, Error<'a>> {
        uint(name, &self.req(name)?)
    }

    fn addr(&self) -> Result<u8, Error<'a>> {
        let a = self.u8("addr")?;
        if a > 0x7f {
            return Err(Error::OutOfRange("addr"));
        }
        Ok(a)
    }

    fn pin(&self) -> Result<PinRef<'a>, Error<'a>> {
        let tag = match self.get("tag") {
            None | Some(Value::Nil) => None,
            Some(Value::Str("")) => None,
            Some(Value::Str(s)) => Some(s),
            Some(_) => return Err(Error::WrongType("tag")),
        };
        let pin = match self.get("pin") {
            None | Some(Value::Nil) => None,
            Some(v) => Some(uint("pin", &v)?),
        };
        if pin.is_none() && tag.is_none() {
            return Err(Error::MissingField("pin"));
        }
        Ok(PinRef { pin, tag })
    }
}

impl<'a> OneGpio<'a> {
    /// Every command name this type parses.
    pub const COMMANDS: [&'static str; 22] = [
        "analog_write",
        "digital_write",
        "pwm_write",
        "servo_position",
        "set_mode_digital_output",
        "set_mode_digital_input",
        "set_mode_digital_input_pullup",
        "set_mode_pwm",
        "set_mode_servo",
        "set_mode_analog_input",
        "set_mode_tone",
        "set_mode_i2c",
        "enable_digital_reporting",
        "disable_digital_reporting",
        "enable_analog_reporting",
        "disable_analog_reporting",
        "i2c_read",
        "i2c_write",
        "play_tone",
        "set_mode_sonar",
        "set_mode_stepper",
        "stepper_write",
    ];

    /// Parses a OneGPIO command payload (validating it with [`super::LIMITS`]).
    ///
    /// # Errors
    /// [`Error::Msg`] / [`Error::NotAMap`] for a malformed payload;
    /// [`Error::MissingField`]`("command")`, [`Error::WrongType`]`("command")`,
    /// [`Error::UnknownCommand`] with the name; for a field:
    /// [`Error::MissingField`] (a pin-addressed command with neither `pin`
    /// nor `tag` reports `pin`), [`Error::WrongType`], [`Error::OutOfRange`],
    /// [`Error::TooMany`] (`pins` beyond 4, `data` beyond 255).
    ///
    /// ```
    /// use banyan_core::cmd::{OneGpio, PinRef};
    /// // msgpack.packb({'command': 'pwm_write', 'pin': 18, 'value': 128}, use_bin_type=True)
    /// let p = b"\x83\xa7command\xa9pwm_write\xa3pin\x12\xa5value\xcc\x80";
    /// let pin = PinRef { pin: Some(18), tag: None };
    /// assert_eq!(OneGpio::parse(p), Ok(OneGpio::PwmWrite { pin, value: 128 }));
    /// ```
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error<'a>> {
        Self::from_map(top_map(payload)?)
    }

    /// Parses an already validated map.
    ///
    /// # Errors
    /// As [`OneGpio::parse`].
    pub fn from_map(map: MapRef<'a>) -> Result<Self, Error<'a>> {
        let f = Fields::new(map);
        let command = f
            .req("command")?
            .as_str()
            .ok_or(Error::WrongType("command"))?;
        let cmd = match command {
            "analog_write" => OneGpio::AnalogWrite {
                pin: f.pin()?,
                value: uint("value", &f.req("value")?)?,
            },
            "digital_write" => {
                let value = match f.req("value")? {
                    Value::Bool(b) => b,
                    Value::UInt(0) => false,
                    Value::UInt(1) => true,
                    Value::UInt(_) | Value::Int(_) => return Err(Error::OutOfRange("value")),
                    _ => return Err(Error::WrongType("value")),
                };
                OneGpio::DigitalWrite {
                    pin: f.pin()?,
                    value,
                }
            }
            "pwm_write" => OneGpio::PwmWrite {
                pin: f.pin()?,
                value: f.u8("value")?,
            },
            "servo_position" => {
                let position = f.u8("position")?;
                if position > 180 {
                    return Err(Error::OutOfRange("position"));
                }
                OneGpio::ServoPosition {
                    pin: f.pin()?,
                    position,
                }
            }
            "set_mode_digital_output" => OneGpio::SetModeDigitalOutput { pin: f.pin()? },
            "set_mode_digital_input" => OneGpio::SetModeDigitalInput { pin: f.pin()? },
            "set_mode_digital_input_pullup" => OneGpio::SetModeDigitalInputPullup { pin: f.pin()? },
            "set_mode_pwm" => OneGpio::SetModePwm { pin: f.pin()? },
            "set_mode_servo" => OneGpio::SetModeServo { pin: f.pin()? },
            "set_mode_analog_input" => OneGpio::SetModeAnalogInput { pin: f.pin()? },
            "set_mode_tone" => OneGpio::SetModeTone { pin: f.pin()? },
            "set_mode_i2c" => OneGpio::SetModeI2c,
            "enable_digital_reporting" => OneGpio::EnableDigitalReporting { pin: f.pin()? },
            "disable_digital_reporting" => OneGpio::DisableDigitalReporting { pin: f.pin()? },
            "enable_analog_reporting" => OneGpio::EnableAnalogReporting { pin: f.pin()? },
            "disable_analog_reporting" => OneGpio::DisableAnalogReporting { pin: f.pin()? },
            "i2c_read" => {
                let addr = f.addr()?;
                let register = match f.req("register")? {
                    Value::Nil => None,
                    v => Some(uint("register", &v)?),
                };
                let number_of_bytes = f.u8("number_of_bytes")?;
                if number_of_bytes == 0 {
                    return Err(Error::OutOfRange("number_of_bytes"));
                }
                OneGpio::I2cRead {
                    addr,
                    register,
                    number_of_bytes,
                }
            }
            "i2c_write" => {
                let addr = f.addr()?;
                let data = f.req("data")?.as_array().ok_or(Error::WrongType("data"))?;
                if data.len() > I2cData::MAX_LEN {
                    return Err(Error::TooMany("data"));
                }
                for v in data.iter() {
                    uint::<u8>("data", &v)?;
                }
                OneGpio::I2cWrite {
                    addr,
                    data: I2cData(data),
                }
            }
            "play_tone" => OneGpio::PlayTone {
                pin: f.pin()?,
                freq: f.u32("freq")?,
                duration: f.u32("duration")?,
            },
            "set_mode_sonar" => OneGpio::SetModeSonar {
                trigger_pin: f.u8("trigger_pin")?,
                echo_pin: f.u8("echo_pin")?,
            },
            "set_mode_stepper" => {
                let list = f.req("pins")?.as_array().ok_or(Error::WrongType("pins"))?;
                let mut pins = Vec::new();
                for v in list.iter() {
                    pins.push(uint("pins", &v)?)
                        .map_err(|_| Error::TooMany("pins"))?;
                }
                if pins.len() != 2 && pins.len() != 4 {
                    return Err(Error::OutOfRange("pins"));
                }
                OneGpio::SetModeStepper {
                    pins,
                    steps_per_revolution: f.u32("steps_per_revolution")?,
                }
            }
            "stepper_write" => OneGpio::StepperWrite {
                number_of_steps: int("number_of_steps", &f.req("number_of_steps")?)?,
                motor_speed: f.u32("motor_speed")?,
            },
            other => return Err(Error::UnknownCommand(other)),
        };
        Ok(cmd)
    }

    /// The command's name as sent in its `command` field.
    pub fn name(&self) -> &'static str {
        match self {
            OneGpio::AnalogWrite { .. } => "analog_write",
            OneGpio::DigitalWrite { .. } => "digital_write",
            OneGpio::PwmWrite { .. } => "pwm_write",
            OneGpio::ServoPosition { .. } => "servo_position",
            OneGpio::SetModeDigitalOutput { .. } => "set_mode_digital_output",
            OneGpio::SetModeDigitalInput { .. } => "set_mode_digital_input",
            OneGpio::SetModeDigitalInputPullup { .. } => "set_mode_digital_input_pullup",
            OneGpio::SetModePwm { .. } => "set_mode_pwm",
            OneGpio::SetModeServo { .. } => "set_mode_servo",
            OneGpio::SetModeAnalogInput { .. } => "set_mode_analog_input",
            OneGpio::SetModeTone { .. } => "set_mode_tone",
            OneGpio::SetModeI2c => "set_mode_i2c",
            OneGpio::EnableDigitalReporting { .. } => "enable_digital_reporting",
            OneGpio::DisableDigitalReporting { .. } => "disable_digital_reporting",
            OneGpio::EnableAnalogReporting { .. } => "enable_analog_reporting",
            OneGpio::DisableAnalogReporting { .. } => "disable_analog_reporting",
            OneGpio::I2cRead { .. } => "i2c_read",
            OneGpio::I2cWrite { .. } => "i2c_write",
            OneGpio::PlayTone { .. } => "play_tone",
            OneGpio::SetModeSonar { .. } => "set_mode_sonar",
            OneGpio::SetModeStepper { .. } => "set_mode_stepper",
            OneGpio::StepperWrite { .. } => "stepper_write",
        }
    }

    /// The pin this command addresses, for the commands that address one.
    pub fn pin(&self) -> Option<PinRef<'a>> {
        match *self {
            OneGpio::AnalogWrite { pin, .. }
            | OneGpio::DigitalWrite { pin, .. }
            | OneGpio::PwmWrite { pin, .. }
            | OneGpio::ServoPosition { pin, .. }
            | OneGpio::SetModeDigitalOutput { pin }
            | OneGpio::SetModeDigitalInput { pin }
            | OneGpio::SetModeDigitalInputPullup { pin }
            | OneGpio::SetModePwm { pin }
            | OneGpio::SetModeServo { pin }
            | OneGpio::SetModeAnalogInput { pin }
            | OneGpio::SetModeTone { pin }
            | OneGpio::EnableDigitalReporting { pin }
            | OneGpio::DisableDigitalReporting { pin }
            | OneGpio::EnableAnalogReporting { pin }
            | OneGpio::DisableAnalogReporting { pin }
            | OneGpio::PlayTone { pin, .. } => Some(pin),
            _ => None,
        }
    }
}
