//! banyan-rs firmware for the LM3S6965 (Cortex-M3) under QEMU `lm3s6965evb`.
//!
//! UART0 carries the serial link; defmt logs go out by semihosting (so the
//! UART stays clean). SysTick gives a 1 kHz clock and wakes the main loop.
//! A panic stops the motors, then ends QEMU with a failure exit code.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod clock;
mod gpio;
mod hw;
mod uart;

use banyan_firmware_app::App;
use cortex_m_rt::entry;
use defmt_semihosting as _;
use embedded_hal::digital::OutputPin;

defmt::timestamp!("{=u32:ms}", clock::ticks_ms());

#[entry]
fn main() -> ! {
    let Some(cp) = cortex_m::Peripherals::take() else {
        halt()
    };
    let mut clock = clock::Clock::start(cp.SYST);
    let mut uart = uart::Uart0::new();
    // The board's status LED (PF0) lights while the firmware runs.
    let mut status = gpio::Output::new(hw::Port::F, 0);
    let _ = status.set_high();
    let mut app = App::new();
    defmt::info!("banyan firmware (lm3s6965) up");
    loop {
        app.poll(clock.now_ms(), &mut uart);
        // Sleep until the next SysTick (1 ms) or other interrupt.
        cortex_m::asm::wfi();
    }
}

fn halt() -> ! {
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    defmt::error!("panic: {}", defmt::Display2Format(info));
    halt()
}
