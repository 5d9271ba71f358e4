//! Panic handling: stop the motors, then halt.
//!
//! The panic handler cannot reach the application's motor objects, so it
//! writes the PWM and SIO registers directly: motor PWM duty to 0 (slice 1,
//! GP2/GP3) and the direction pins (GP4/GP5) low. This is the board's only
//! `unsafe` code.
#![allow(unsafe_code)]

use rp2040_hal::pac;

/// The PWM slice driving both motors' enable pins (GP2 = A, GP3 = B).
pub const MOTOR_SLICE: usize = 1;
/// Direction pins of the left and right motors.
pub const MOTOR_DIR_PINS: [u8; 2] = [4, 5];

/// Forces the motors off from any context (panic, fatal init error).
pub fn stop_motors() {
    // SAFETY: called with interrupts disabled (panic) or before the main loop
    // (init failure); the writes race with nothing. CC = 0 sets both channels'
    // compare values to zero (output low from the next PWM period); the SIO
    // clear register is write-1-to-clear and touches only the bits written.
    unsafe {
        let pwm = &*pac::PWM::ptr();
        pwm.ch(MOTOR_SLICE).cc().write(|w| w.bits(0));
        let sio = &*pac::SIO::ptr();
        let mask = MOTOR_DIR_PINS.iter().fold(0u32, |m, p| m | (1 << p));
        sio.gpio_out_clr().write(|w| w.bits(mask));
    }
}

/// Stops the motors and stays here for good.
pub fn halt() -> ! {
    stop_motors();
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    stop_motors();
    // The location only: formatting the message (`Display2Format(info)`)
    // would link core::fmt's integer formatting (~1.5 KiB) for panics that
    // the code is written not to have.
    match info.location() {
        Some(l) => defmt::error!("panic at {=str}:{=u32}", l.file(), l.line()),
        None => defmt::error!("panic"),
    }
    halt()
}
