//! banyan-rs firmware for the Raspberry Pi Pico (RP2040, Cortex-M0+).
//!
//! UART0 on GP0 (TX, Pico pin 1) / GP1 (RX, pin 2) carries the serial link at
//! 115200 8N1; defmt logs go out over RTT (probe-rs). The 1 MHz hardware
//! timer gives the millisecond clock. See docs/firmware.md for the wiring.
//!
//! Actuators: motors `left` (PWM GP2, direction GP4) and `right` (PWM GP3,
//! direction GP5) for a PH/EN H-bridge (DRV8835 and alike), PWM at 20 kHz;
//! LEDs `status` (the on-board LED, GP25) and `aux` (GP15) with PWM
//! brightness. A panic stops the motors, then halts.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod panic;
mod pwm;

use banyan_core::actuator::{Config as MotorConfig, Motor, PwmLed};
use banyan_core::link;
use banyan_firmware_app::{clock::MsClock, App, Config, Robot};
use defmt_rtt as _;
use fugit::RateExtU32;
use pwm::PwmOut;
use rp2040_hal::{
    clocks::init_clocks_and_plls,
    gpio::{DynPinId, FunctionSioOutput, FunctionUart, Pin, Pins, PullDown},
    pac,
    pwm::Slices,
    rosc::RingOscillator,
    uart::{DataBits, StopBits, UartConfig, UartPeripheral},
    Clock, Sio, Timer, Watchdog,
};

/// The second-stage bootloader for the Pico's W25Q16 flash.
// `link_section` counts as unsafe code: this places 256 bytes in the `.boot2`
// output section that memory.x puts at the start of flash, as the RP2040 boot
// ROM requires; nothing else is placed there.
#[allow(unsafe_code)]
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XOSC_HZ: u32 = 12_000_000;

/// Serial link rate.
pub const BAUD: u32 = 115_200;

/// Device name in HELLO; reports go to `from_<name>`. Set at build time with
/// the `BANYAN_DEVICE_NAME` environment variable.
const NAME: &str = match option_env!("BANYAN_DEVICE_NAME") {
    Some(n) => n,
    None => "pico-bot",
};

/// Period of the stats report on the report topic.
const STATS_MS: u32 = 10_000;

/// Motors stop this long after the last `run_motors`.
const DEADMAN_MS: u64 = 500;

/// Motor PWM: 125 MHz / 6250 = 20 kHz (above hearing), 6250 duty steps.
const MOTOR_PWM_TOP: u16 = 6249;

/// LED PWM: 125 MHz / 16 / 65536 ≈ 119 Hz.
const LED_PWM_DIV: u8 = 16;

type DirPin = Pin<DynPinId, FunctionSioOutput, PullDown>;
type PicoMotor = Motor<PwmOut, DirPin>;
type PicoLed = PwmLed<PwmOut>;
type PicoApp = App<PicoMotor, PicoLed, 2, 2>;

#[rp2040_hal::entry]
fn main() -> ! {
    let Some(mut pac) = pac::Peripherals::take() else {
        panic::halt()
    };
    let mut watchdog = Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = init_clocks_and_plls(
        XOSC_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        panic::halt()
    };
    let sio = Sio::new(pac.SIO);
    let pins = Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );
    let timer = Timer::new(pac.TIMER, &mut pac.RESETS, &clocks);

    let uart_pins = (
        pins.gpio0.into_function::<FunctionUart>(),
        pins.gpio1.into_function::<FunctionUart>(),
    );
    let Ok(mut uart) = UartPeripheral::new(pac.UART0, uart_pins, &mut pac.RESETS).enable(
        UartConfig::new(BAUD.Hz(), DataBits::Eight, None, StopBits::One),
        clocks.peripheral_clock.freq(),
    ) else {
        panic::halt()
    };

    // A session id from the ring oscillator's random bit: differs per boot.
    let rosc = RingOscillator::new(pac.ROSC).initialize();
    let session = (0..32).fold(0u32, |acc, _| (acc << 1) | u32::from(rosc.get_random_bit()));

    let slices = Slices::new(pac.PWM, &mut pac.RESETS);
    let mut motor_slice = slices.pwm1;
    motor_slice.set_top(MOTOR_PWM_TOP);
    motor_slice.enable();
    let mut left_pwm = motor_slice.channel_a;
    let mut right_pwm = motor_slice.channel_b;
    left_pwm.output_to(pins.gpio2);
    right_pwm.output_to(pins.gpio3);
    let mut led_slice = slices.pwm4;
    led_slice.set_div_int(LED_PWM_DIV);
    led_slice.enable();
    let mut status_pwm = led_slice.channel_b;
    status_pwm.output_to(pins.gpio25);
    let mut aux_slice = slices.pwm7;
    aux_slice.set_div_int(LED_PWM_DIV);
    aux_slice.enable();
    let mut aux_pwm = aux_slice.channel_b;
    aux_pwm.output_to(pins.gpio15);

    let left_dir: DirPin = pins.gpio4.into_push_pull_output().into_dyn_pin();
    let right_dir: DirPin = pins.gpio5.into_push_pull_output().into_dyn_pin();

    let mut robot: Robot<PicoMotor, PicoLed, 2, 2> = Robot::new(DEADMAN_MS);
    let motors = [
        ("left", PwmOut::Gp2(left_pwm), left_dir),
        ("right", PwmOut::Gp3(right_pwm), right_dir),
    ];
    for (name, pwm, dir) in motors {
        if robot
            .add_motor(name, Motor::new(pwm, dir, MotorConfig::new()))
            .is_err()
        {
            panic::halt()
        }
    }
    let leds = [
        ("status", PwmOut::Gp25(status_pwm)),
        ("aux", PwmOut::Gp15(aux_pwm)),
    ];
    for (name, pwm) in leds {
        if robot.add_led(name, PwmLed::new(pwm, false)).is_err() {
            panic::halt()
        }
    }

    let config = Config {
        name: NAME,
        version: env!("CARGO_PKG_VERSION"),
        session,
        link: link::Config::default(),
        stats_interval_ms: STATS_MS,
    };
    // The application lives in a static (not in main's frame): its state
    // then shows in .bss and the stack stays small.
    let Some(Ok(app)) = cortex_m::singleton!(
        APP: Result<PicoApp, banyan_firmware_app::Error> = App::new(&config, robot)
    ) else {
        panic::halt()
    };
    defmt::info!(
        "banyan firmware {=str} (rp2040) up, session {=u32:x}",
        NAME,
        session
    );
    // 32-bit arithmetic only (no 64-bit division linked on the M0+).
    let mut clock = MsClock::new(timer.get_counter_low());
    loop {
        let now_ms = clock.now_ms(timer.get_counter_low());
        app.poll(now_ms, &mut uart);
    }
}
