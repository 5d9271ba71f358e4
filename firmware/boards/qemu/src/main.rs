//! banyan-rs firmware for the LM3S6965 (Cortex-M3) under QEMU `lm3s6965evb`.
//!
//! UART0 carries the serial link; defmt logs go out by semihosting (so the
//! UART stays clean). SysTick gives a 1 kHz clock and wakes the main loop.
//!
//! Actuators: motors `left` (direction PD0) and `right` (direction PD1) with
//! simulated PWM (see [`pwm`]); LEDs `status` (PF0, the board's LED) and
//! `aux` (PF1), on/off. A panic stops the motors (direction pins low, no more
//! PWM updates), then ends QEMU with a failure exit code.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod clock;
mod gpio;
mod hw;
mod pwm;
mod uart;

use banyan_core::actuator::{Config as MotorConfig, Led, Motor};
use banyan_core::link;
use banyan_firmware_app::{App, Config, Robot};
use cortex_m_rt::entry;
use defmt_semihosting as _;
use hw::Port;

defmt::timestamp!("{=u32:ms}", clock::ticks_ms());

/// Device name in HELLO; reports go to `from_<name>`. Set at build time with
/// the `BANYAN_DEVICE_NAME` environment variable.
const NAME: &str = match option_env!("BANYAN_DEVICE_NAME") {
    Some(n) => n,
    None => "qemu-bot",
};

/// Period of the stats report on the report topic.
const STATS_MS: u32 = 10_000;

/// Motors stop this long after the last `run_motors`.
const DEADMAN_MS: u64 = 500;

/// Motor direction pins (port D).
const DIR_PINS: [u8; 2] = [0, 1];

/// How often the stack high-water mark is logged.
const STACK_LOG_MS: u64 = 1_000;

type QemuMotor = Motor<pwm::SimPwm, gpio::Output>;
type QemuLed = Led<gpio::Output>;
type QemuApp = App<QemuMotor, QemuLed, 2, 2>;

#[entry]
fn main() -> ! {
    let Some(cp) = cortex_m::Peripherals::take() else {
        halt()
    };
    let mut clock = clock::Clock::start(cp.SYST);
    let mut uart = uart::Uart0::new();

    let mut robot: Robot<QemuMotor, QemuLed, 2, 2> = Robot::new(DEADMAN_MS);
    for (name, pin) in [("left", DIR_PINS[0]), ("right", DIR_PINS[1])] {
        let motor = Motor::new(
            pwm::SimPwm::default(),
            gpio::Output::new(Port::D, pin),
            MotorConfig::new(),
        );
        if robot.add_motor(name, motor).is_err() {
            halt()
        }
    }
    for (name, pin) in [("status", 0), ("aux", 1)] {
        if robot
            .add_led(name, Led::new(gpio::Output::new(Port::F, pin), false))
            .is_err()
        {
            halt()
        }
    }
    let config = Config {
        name: NAME,
        version: env!("CARGO_PKG_VERSION"),
        session: hw::host_time_s(),
        link: link::Config::default(),
        stats_interval_ms: STATS_MS,
    };
    // The application lives in a static (not in main's frame): its state
    // then shows in .bss and the stack stays small.
    let Some(Ok(app)) = cortex_m::singleton!(APP: Result<QemuApp, banyan_firmware_app::Error> = App::new(&config, robot))
    else {
        halt()
    };
    defmt::info!(
        "banyan firmware {=str} (lm3s6965) up, session {=u32:x}",
        NAME,
        config.session
    );
    let mut next_stack_log = 0;
    loop {
        let now = clock.now_ms();
        app.poll(now, &mut uart);
        if now >= next_stack_log {
            next_stack_log = now + STACK_LOG_MS;
            defmt::info!("stack high-water: {=usize} bytes", hw::stack_high_water());
        }
        // Sleep until the next SysTick (1 ms) or other interrupt.
        cortex_m::asm::wfi();
    }
}

/// Stops the motors by driving their direction pins low (the simulated PWM
/// stops with the program).
fn stop_motors() {
    for pin in DIR_PINS {
        hw::gpio_write(Port::D, pin, false);
    }
}

fn halt() -> ! {
    stop_motors();
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    stop_motors();
    defmt::error!("panic: {}", defmt::Display2Format(info));
    halt()
}
