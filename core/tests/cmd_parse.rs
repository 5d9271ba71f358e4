//! `cmd` parsing: every command, every error, on payloads packed by Python.
//!
//! Each constant is `msgpack.packb(obj, use_bin_type=True).hex()` of the
//! Python object in its doc comment, made with the project's `.venv/bin/python`.

use banyan_core::cmd::{Error, LightLeds, OneGpio, PinRef, RunMotors};
use banyan_core::msg;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `{'left': 0.5, 'right': -0.5}`
const RM_TWO: &str = "82a46c656674cb3fe0000000000000a57269676874cbbfe0000000000000";
/// `{'left': 1, 'right': -1, 'duration_ms': 500}`
const RM_INTS_DURATION: &str = "83a46c65667401a57269676874ffab6475726174696f6e5f6d73cd01f4";
/// `{}`
const RM_EMPTY: &str = "80";
/// `{'left': 1.5}`
const RM_TOO_FAST: &str = "81a46c656674cb3ff8000000000000";
/// `{'left': -1.0000001}`
const RM_BARELY_OVER: &str = "81a46c656674cbbff000001ad7f29b";
/// `{'left': nan}`
const RM_NAN: &str = "81a46c656674cb7ff8000000000000";
/// `{'left': inf}`
const RM_INF: &str = "81a46c656674cb7ff0000000000000";
/// `{'left': 'fast'}`
const RM_STR: &str = "81a46c656674a466617374";
/// `{'left': True}`
const RM_BOOL: &str = "81a46c656674c3";
/// `{'left': None}`
const RM_NONE: &str = "81a46c656674c0";
/// `{'left': [1]}`
const RM_LIST: &str = "81a46c6566749101";
/// `{'a': 0, 'b': 0, 'c': 0}`
const RM_THREE: &str = "83a16100a16200a16300";
/// `{'left': 0, 'duration_ms': -1}`
const RM_NEG_DURATION: &str = "82a46c65667400ab6475726174696f6e5f6d73ff";
/// `{'duration_ms': 4294967296}`
const RM_BIG_DURATION: &str = "81ab6475726174696f6e5f6d73cf0000000100000000";
/// `{'duration_ms': 1.5}`
const RM_FLOAT_DURATION: &str = "81ab6475726174696f6e5f6d73cb3ff8000000000000";
/// `{'left': 2}`
const RM_BIG_INT: &str = "81a46c65667402";
/// `{'status': True, 'head': 0.3, 'tail': 0, 'x': 1, 'y': False}`
const LL_MIXED: &str = "85a6737461747573c3a468656164cb3fd3333333333333a47461696c00a17801a179c2";
/// `{'head': -0.1}`
const LL_NEG: &str = "81a468656164cbbfb999999999999a";
/// `{'head': 2}`
const LL_TWO: &str = "81a46865616402";
/// `{'head': 'on'}`
const LL_STR: &str = "81a468656164a26f6e";
/// `{'command': 'digital_write', 'pin': 12, 'value': 1}`
const G_DIGITAL_WRITE: &str =
    "83a7636f6d6d616e64ad6469676974616c5f7772697465a370696e0ca576616c756501";
/// `{'command': 'digital_write', 'pin': 12, 'value': 0, 'message_target': 'rpi', 'tag': 'led1'}`
const G_DIGITAL_WRITE_TARGET: &str = "85a7636f6d6d616e64ad6469676974616c5f7772697465a370696e0ca576616c756500ae6d6573736167655f746172676574a3727069a3746167a46c656431";
/// `{'command': 'digital_write', 'tag': 'led1', 'value': True}`
const G_DIGITAL_WRITE_TAG_ONLY: &str =
    "83a7636f6d6d616e64ad6469676974616c5f7772697465a3746167a46c656431a576616c7565c3";
/// `{'command': 'digital_write', 'pin': 12, 'value': 2}`
const G_DIGITAL_WRITE_2: &str =
    "83a7636f6d6d616e64ad6469676974616c5f7772697465a370696e0ca576616c756502";
/// `{'command': 'digital_write', 'value': 1}`
const G_DIGITAL_WRITE_NOPIN: &str = "82a7636f6d6d616e64ad6469676974616c5f7772697465a576616c756501";
/// `{'command': 'digital_write', 'pin': 3}`
const G_DIGITAL_WRITE_NOVALUE: &str = "82a7636f6d6d616e64ad6469676974616c5f7772697465a370696e03";
/// `{'command': 'analog_write', 'pin': 5, 'value': 1000}`
const G_ANALOG_WRITE: &str =
    "83a7636f6d6d616e64ac616e616c6f675f7772697465a370696e05a576616c7565cd03e8";
/// `{'command': 'pwm_write', 'pin': 18, 'value': 255}`
const G_PWM_WRITE: &str = "83a7636f6d6d616e64a970776d5f7772697465a370696e12a576616c7565ccff";
/// `{'command': 'pwm_write', 'pin': 18, 'value': 256}`
const G_PWM_WRITE_256: &str = "83a7636f6d6d616e64a970776d5f7772697465a370696e12a576616c7565cd0100";
/// `{'command': 'pwm_write', 'pin': 18, 'value': 0.5}`
const G_PWM_WRITE_FLOAT: &str =
    "83a7636f6d6d616e64a970776d5f7772697465a370696e12a576616c7565cb3fe0000000000000";
/// `{'command': 'servo_position', 'pin': 17, 'position': 90}`
const G_SERVO: &str =
    "83a7636f6d6d616e64ae736572766f5f706f736974696f6ea370696e11a8706f736974696f6e5a";
/// `{'command': 'servo_position', 'pin': 17, 'position': 181}`
const G_SERVO_181: &str =
    "83a7636f6d6d616e64ae736572766f5f706f736974696f6ea370696e11a8706f736974696f6eccb5";
/// `{'command': 'set_mode_pwm', 'pin': '18'}`
const G_PIN_STR: &str = "82a7636f6d6d616e64ac7365745f6d6f64655f70776da370696ea23138";
/// `{'command': 'set_mode_pwm', 'pin': 300}`
const G_PIN_300: &str = "82a7636f6d6d616e64ac7365745f6d6f64655f70776da370696ecd012c";
/// `{'command': 'set_mode_pwm', 'pin': 1, 'tag': 5}`
const G_TAG_INT: &str = "83a7636f6d6d616e64ac7365745f6d6f64655f70776da370696e01a374616705";
/// `{'command': 'i2c_read', 'addr': 72, 'register': 1, 'number_of_bytes': 2}`
const G_I2C_READ: &str = "84a7636f6d6d616e64a86932635f72656164a46164647248a8726567697374657201af6e756d6265725f6f665f627974657302";
/// `{'command': 'i2c_read', 'addr': 72, 'register': None, 'number_of_bytes': 2}`
const G_I2C_READ_NOREG: &str = "84a7636f6d6d616e64a86932635f72656164a46164647248a87265676973746572c0af6e756d6265725f6f665f627974657302";
/// `{'command': 'i2c_read', 'addr': 128, 'register': 1, 'number_of_bytes': 2}`
const G_I2C_READ_ADDR: &str = "84a7636f6d6d616e64a86932635f72656164a461646472cc80a8726567697374657201af6e756d6265725f6f665f627974657302";
/// `{'command': 'i2c_write', 'addr': 72, 'data': [1, 2, 255]}`
const G_I2C_WRITE: &str = "83a7636f6d6d616e64a96932635f7772697465a46164647248a464617461930102ccff";
/// `{'command': 'i2c_write', 'addr': 72, 'data': [1, 256]}`
const G_I2C_WRITE_BAD: &str =
    "83a7636f6d6d616e64a96932635f7772697465a46164647248a4646174619201cd0100";
/// `{'command': 'i2c_write', 'addr': 72, 'data': 7}`
const G_I2C_WRITE_NOTLIST: &str = "83a7636f6d6d616e64a96932635f7772697465a46164647248a46461746107";
/// `{'command': 'play_tone', 'pin': 13, 'freq': 440, 'duration': 1000}`
const G_TONE: &str =
    "84a7636f6d6d616e64a9706c61795f746f6e65a370696e0da466726571cd01b8a86475726174696f6ecd03e8";
/// `{'command': 'set_mode_sonar', 'trigger_pin': 23, 'echo_pin': 24}`
const G_SONAR: &str = "83a7636f6d6d616e64ae7365745f6d6f64655f736f6e6172ab747269676765725f70696e17a86563686f5f70696e18";
/// `{'command': 'set_mode_stepper', 'pins': [5, 6, 13, 19], 'steps_per_revolution': 512}`
const G_STEPPER: &str = "83a7636f6d6d616e64b07365745f6d6f64655f73746570706572a470696e739405060d13b473746570735f7065725f7265766f6c7574696f6ecd0200";
/// `{'command': 'set_mode_stepper', 'pins': [1, 2, 3, 4, 5], 'steps_per_revolution': 512}`
const G_STEPPER_5: &str = "83a7636f6d6d616e64b07365745f6d6f64655f73746570706572a470696e73950102030405b473746570735f7065725f7265766f6c7574696f6ecd0200";
/// `{'command': 'set_mode_stepper', 'pins': [1, 2, 3], 'steps_per_revolution': 512}`
const G_STEPPER_3: &str = "83a7636f6d6d616e64b07365745f6d6f64655f73746570706572a470696e7393010203b473746570735f7065725f7265766f6c7574696f6ecd0200";
/// `{'command': 'stepper_write', 'number_of_steps': -200, 'motor_speed': 30}`
const G_STEPPER_WRITE: &str = "83a7636f6d6d616e64ad737465707065725f7772697465af6e756d6265725f6f665f7374657073d1ff38ab6d6f746f725f73706565641e";
/// `{'command': 'set_mode_i2c'}`
const G_SET_MODE_I2C: &str = "81a7636f6d6d616e64ac7365745f6d6f64655f693263";
/// `{'command': 'fly', 'pin': 1}`
const G_UNKNOWN: &str = "82a7636f6d6d616e64a3666c79a370696e01";
/// `{'pin': 1}`
const G_NO_COMMAND: &str = "81a370696e01";
/// `{'command': 7}`
const G_COMMAND_INT: &str = "81a7636f6d6d616e6407";
/// `{'command': NAME, 'pin': 7}` for each single-pin command NAME
const G_SIMPLE: &[(&str, &str)] = &[
    (
        "set_mode_digital_output",
        "82a7636f6d6d616e64b77365745f6d6f64655f6469676974616c5f6f7574707574a370696e07",
    ),
    (
        "set_mode_digital_input",
        "82a7636f6d6d616e64b67365745f6d6f64655f6469676974616c5f696e707574a370696e07",
    ),
    (
        "set_mode_digital_input_pullup",
        "82a7636f6d6d616e64bd7365745f6d6f64655f6469676974616c5f696e7075745f70756c6c7570a370696e07",
    ),
    (
        "set_mode_pwm",
        "82a7636f6d6d616e64ac7365745f6d6f64655f70776da370696e07",
    ),
    (
        "set_mode_servo",
        "82a7636f6d6d616e64ae7365745f6d6f64655f736572766fa370696e07",
    ),
    (
        "set_mode_analog_input",
        "82a7636f6d6d616e64b57365745f6d6f64655f616e616c6f675f696e707574a370696e07",
    ),
    (
        "set_mode_tone",
        "82a7636f6d6d616e64ad7365745f6d6f64655f746f6e65a370696e07",
    ),
    (
        "enable_digital_reporting",
        "82a7636f6d6d616e64b8656e61626c655f6469676974616c5f7265706f7274696e67a370696e07",
    ),
    (
        "disable_digital_reporting",
        "82a7636f6d6d616e64b964697361626c655f6469676974616c5f7265706f7274696e67a370696e07",
    ),
    (
        "enable_analog_reporting",
        "82a7636f6d6d616e64b7656e61626c655f616e616c6f675f7265706f7274696e67a370696e07",
    ),
    (
        "disable_analog_reporting",
        "82a7636f6d6d616e64b864697361626c655f616e616c6f675f7265706f7274696e67a370696e07",
    ),
];

type Parsed = (Vec<(String, f32)>, Option<u32>);

fn rm(h: &str) -> Result<Parsed, String> {
    let b = unhex(h);
    RunMotors::<2>::parse(&b)
        .map(|c| {
            (
                c.speeds.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
                c.duration_ms,
            )
        })
        .map_err(|e| e.to_string())
}

#[test]
fn run_motors_accepts_floats_ints_and_duration() {
    assert_eq!(
        rm(RM_TWO),
        Ok((vec![("left".into(), 0.5), ("right".into(), -0.5)], None))
    );
    assert_eq!(
        rm(RM_INTS_DURATION),
        Ok((
            vec![("left".into(), 1.0), ("right".into(), -1.0)],
            Some(500)
        ))
    );
    assert_eq!(rm(RM_EMPTY), Ok((vec![], None)));
    let b = unhex(RM_TWO);
    let c = RunMotors::<2>::parse(&b).unwrap();
    assert_eq!(c.speed("right"), Some(-0.5));
    assert_eq!(c.speed("middle"), None);
    assert_eq!(c.check_names(&["left", "right", "arm"]), Ok(()));
    assert_eq!(c.check_names(&["left"]), Err(Error::UnknownField("right")));
}

#[test]
fn run_motors_refuses_instead_of_clamping() {
    let b = unhex(RM_TOO_FAST);
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::OutOfRange("left")));
    let b = unhex(RM_BARELY_OVER);
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::OutOfRange("left")));
    let b = unhex(RM_INF);
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::OutOfRange("left")));
    let b = unhex(RM_BIG_INT);
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::OutOfRange("left")));
    let b = unhex(RM_NAN);
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::NotANumber("left")));
    for h in [RM_STR, RM_BOOL, RM_NONE, RM_LIST] {
        let b = unhex(h);
        assert_eq!(
            RunMotors::<2>::parse(&b),
            Err(Error::WrongType("left")),
            "{h}"
        );
    }
    let b = unhex(RM_THREE);
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::TooMany("c")));
    assert!(RunMotors::<3>::parse(&b).is_ok());
    let b = unhex(RM_NEG_DURATION);
    assert_eq!(
        RunMotors::<2>::parse(&b),
        Err(Error::OutOfRange("duration_ms"))
    );
    let b = unhex(RM_BIG_DURATION);
    assert_eq!(
        RunMotors::<2>::parse(&b),
        Err(Error::OutOfRange("duration_ms"))
    );
    let b = unhex(RM_FLOAT_DURATION);
    assert_eq!(
        RunMotors::<2>::parse(&b),
        Err(Error::WrongType("duration_ms"))
    );
    // Python cannot send duplicate keys, a hand-made payload can:
    // {'left': 0, 'left': 0} and {'duration_ms': 1, 'duration_ms': 1}
    let b = unhex("82a46c65667400a46c65667400");
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::DuplicateName("left")));
    let b = unhex("82ab6475726174696f6e5f6d7301ab6475726174696f6e5f6d7301");
    assert_eq!(
        RunMotors::<2>::parse(&b),
        Err(Error::DuplicateName("duration_ms"))
    );
}

#[test]
fn malformed_payloads_are_errors() {
    // [0.5]: not a map
    let b = unhex("91cb3fe0000000000000");
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::NotAMap));
    assert_eq!(LightLeds::<2>::parse(&b), Err(Error::NotAMap));
    assert_eq!(OneGpio::parse(&b), Err(Error::NotAMap));
    // {1: 0.5}: an int key, refused as Python refuses it
    let b = unhex("8101cb3fe0000000000000");
    assert_eq!(
        RunMotors::<2>::parse(&b),
        Err(Error::Msg(msg::Error::MapKey))
    );
    // {b'left': 0}: a bin key passes validation but is no name
    let b = unhex("81c4046c65667400");
    assert_eq!(RunMotors::<2>::parse(&b), Err(Error::KeyNotStr));
    assert_eq!(LightLeds::<2>::parse(&b), Err(Error::KeyNotStr));
    // truncated and trailing
    let b = unhex(RM_TWO);
    assert_eq!(
        RunMotors::<2>::parse(&b[..b.len() - 1]),
        Err(Error::Msg(msg::Error::Truncated))
    );
    let mut t = b.clone();
    t.push(0);
    assert_eq!(
        RunMotors::<2>::parse(&t),
        Err(Error::Msg(msg::Error::TrailingBytes))
    );
    // Too big for cmd::LIMITS (4 KiB).
    let mut big = vec![0xc5, 0x10, 0x00];
    big.resize(3 + 4096, 0);
    assert_eq!(OneGpio::parse(&big), Err(Error::Msg(msg::Error::TooLarge)));
    // Too deep for cmd::LIMITS (depth 4): {'a': [[[[1]]]]}
    let b = unhex("81a1619191919101");
    assert_eq!(OneGpio::parse(&b), Err(Error::Msg(msg::Error::TooDeep)));
}

#[test]
fn light_leds_accepts_bools_ints_and_fractions() {
    let b = unhex(LL_MIXED);
    let c = LightLeds::<5>::parse(&b).unwrap();
    let got: Vec<_> = c.levels.iter().map(|(n, x)| (*n, *x)).collect();
    assert_eq!(
        got,
        vec![
            ("status", 1.0),
            ("head", 0.3),
            ("tail", 0.0),
            ("x", 1.0),
            ("y", 0.0)
        ]
    );
    assert_eq!(c.level("head"), Some(0.3));
    assert_eq!(
        c.check_names(&["status", "head", "tail", "x"]),
        Err(Error::UnknownField("y"))
    );
    assert_eq!(LightLeds::<4>::parse(&b), Err(Error::TooMany("y")));
    let b = unhex(LL_NEG);
    assert_eq!(LightLeds::<4>::parse(&b), Err(Error::OutOfRange("head")));
    let b = unhex(LL_TWO);
    assert_eq!(LightLeds::<4>::parse(&b), Err(Error::OutOfRange("head")));
    let b = unhex(LL_STR);
    assert_eq!(LightLeds::<4>::parse(&b), Err(Error::WrongType("head")));
}

fn g(h: &str) -> OneGpio<'static> {
    let b: &'static [u8] = Box::leak(unhex(h).into_boxed_slice());
    OneGpio::parse(b).unwrap_or_else(|e| panic!("{h}: {e}"))
}

fn g_err(h: &str) -> Error<'static> {
    let b: &'static [u8] = Box::leak(unhex(h).into_boxed_slice());
    OneGpio::parse(b).expect_err(h)
}

const fn pin(n: u8) -> PinRef<'static> {
    PinRef {
        pin: Some(n),
        tag: None,
    }
}

#[test]
fn onegpio_every_command_parses() {
    assert_eq!(
        g(G_DIGITAL_WRITE),
        OneGpio::DigitalWrite {
            pin: pin(12),
            value: true
        }
    );
    assert_eq!(
        g(G_DIGITAL_WRITE_TARGET),
        OneGpio::DigitalWrite {
            pin: PinRef {
                pin: Some(12),
                tag: Some("led1")
            },
            value: false
        }
    );
    assert_eq!(
        g(G_DIGITAL_WRITE_TAG_ONLY),
        OneGpio::DigitalWrite {
            pin: PinRef {
                pin: None,
                tag: Some("led1")
            },
            value: true
        }
    );
    assert_eq!(
        g(G_ANALOG_WRITE),
        OneGpio::AnalogWrite {
            pin: pin(5),
            value: 1000
        }
    );
    assert_eq!(
        g(G_PWM_WRITE),
        OneGpio::PwmWrite {
            pin: pin(18),
            value: 255
        }
    );
    assert_eq!(
        g(G_SERVO),
        OneGpio::ServoPosition {
            pin: pin(17),
            position: 90
        }
    );
    assert_eq!(
        g(G_I2C_READ),
        OneGpio::I2cRead {
            addr: 0x48,
            register: Some(1),
            number_of_bytes: 2
        }
    );
    assert_eq!(
        g(G_I2C_READ_NOREG),
        OneGpio::I2cRead {
            addr: 0x48,
            register: None,
            number_of_bytes: 2
        }
    );
    match g(G_I2C_WRITE) {
        OneGpio::I2cWrite { addr, data } => {
            assert_eq!(addr, 0x48);
            assert_eq!(data.len(), 3);
            assert_eq!(data.iter().collect::<Vec<_>>(), vec![1, 2, 255]);
            let mut out = [0u8; 2];
            assert_eq!(data.copy_to(&mut out), 2);
            assert_eq!(out, [1, 2]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        g(G_TONE),
        OneGpio::PlayTone {
            pin: pin(13),
            freq: 440,
            duration: 1000
        }
    );
    assert_eq!(
        g(G_SONAR),
        OneGpio::SetModeSonar {
            trigger_pin: 23,
            echo_pin: 24
        }
    );
    assert_eq!(
        g(G_STEPPER),
        OneGpio::SetModeStepper {
            pins: heapless::Vec::from_slice(&[5, 6, 13, 19]).unwrap(),
            steps_per_revolution: 512
        }
    );
    assert_eq!(
        g(G_STEPPER_WRITE),
        OneGpio::StepperWrite {
            number_of_steps: -200,
            motor_speed: 30
        }
    );
    assert_eq!(g(G_SET_MODE_I2C), OneGpio::SetModeI2c);
    for (name, h) in G_SIMPLE {
        let c = g(h);
        assert_eq!(c.name(), *name);
        assert_eq!(c.pin(), Some(pin(7)), "{name}");
    }
    // Every listed command name is parsed by some test case above.
    let covered: Vec<&str> = [
        G_DIGITAL_WRITE,
        G_ANALOG_WRITE,
        G_PWM_WRITE,
        G_SERVO,
        G_I2C_READ,
        G_I2C_WRITE,
        G_TONE,
        G_SONAR,
        G_STEPPER,
        G_STEPPER_WRITE,
        G_SET_MODE_I2C,
    ]
    .iter()
    .map(|h| g(h).name())
    .chain(G_SIMPLE.iter().map(|(n, _)| *n))
    .collect();
    for name in OneGpio::COMMANDS {
        assert!(covered.contains(&name), "{name} untested");
    }
    assert_eq!(covered.len(), OneGpio::COMMANDS.len());
}

#[test]
fn onegpio_errors_name_the_field() {
    assert_eq!(g_err(G_DIGITAL_WRITE_2), Error::OutOfRange("value"));
    assert_eq!(g_err(G_DIGITAL_WRITE_NOPIN), Error::MissingField("pin"));
    assert_eq!(g_err(G_DIGITAL_WRITE_NOVALUE), Error::MissingField("value"));
    assert_eq!(g_err(G_PWM_WRITE_256), Error::OutOfRange("value"));
    assert_eq!(g_err(G_PWM_WRITE_FLOAT), Error::WrongType("value"));
    assert_eq!(g_err(G_SERVO_181), Error::OutOfRange("position"));
    assert_eq!(g_err(G_PIN_STR), Error::WrongType("pin"));
    assert_eq!(g_err(G_PIN_300), Error::OutOfRange("pin"));
    assert_eq!(g_err(G_TAG_INT), Error::WrongType("tag"));
    assert_eq!(g_err(G_I2C_READ_ADDR), Error::OutOfRange("addr"));
    assert_eq!(g_err(G_I2C_WRITE_BAD), Error::OutOfRange("data"));
    assert_eq!(g_err(G_I2C_WRITE_NOTLIST), Error::WrongType("data"));
    assert_eq!(g_err(G_STEPPER_5), Error::TooMany("pins"));
    assert_eq!(g_err(G_STEPPER_3), Error::OutOfRange("pins"));
    assert_eq!(g_err(G_UNKNOWN), Error::UnknownCommand("fly"));
    assert_eq!(g_err(G_NO_COMMAND), Error::MissingField("command"));
    assert_eq!(g_err(G_COMMAND_INT), Error::WrongType("command"));
}

#[test]
fn error_display_is_terse_and_names_the_field() {
    assert_eq!(
        Error::OutOfRange("left").to_string(),
        "value out of range for field left"
    );
    assert_eq!(Error::MissingField("pin").to_string(), "missing field pin");
    assert_eq!(
        Error::UnknownCommand("fly").to_string(),
        "unknown command fly"
    );
    assert_eq!(
        Error::Msg(msg::Error::Truncated).to_string(),
        "malformed payload: truncated msgpack"
    );
    let e: &dyn core::error::Error = &Error::NotAMap;
    assert_eq!(e.to_string(), "payload is not a map");
}
