//! Panic handling: stop the motors, then halt.

/// Stops here for good (a watchdog-less halt; the motors are already stopped).
pub fn halt() -> ! {
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
