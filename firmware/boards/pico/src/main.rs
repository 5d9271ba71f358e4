//! banyan-rs firmware for the Raspberry Pi Pico (RP2040, Cortex-M0+).
//!
//! UART0 on GP0 (TX, Pico pin 1) / GP1 (RX, pin 2) carries the serial link at
//! 115200 8N1; defmt logs go out over RTT (probe-rs). The 1 MHz hardware
//! timer gives the millisecond clock. See docs/firmware.md for the wiring.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod panic;

use banyan_firmware_app::App;
use defmt_rtt as _;
use fugit::RateExtU32;
use rp2040_hal::{
    clocks::init_clocks_and_plls,
    gpio::{FunctionUart, Pins},
    pac,
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

    let mut app = App::new();
    defmt::info!("banyan firmware (rp2040) up");
    loop {
        let now_ms = timer.get_counter().ticks() / 1000;
        app.poll(now_ms, &mut uart);
    }
}
