//! Register access for the LM3S6965 peripherals this firmware uses: the
//! system control clock gates, UART0 (an ARM PL011) and GPIO ports (ARM
//! PL061-like). QEMU `lm3s6965evb` models all three.
//!
//! This is the only module of the board with `unsafe`: every access is a
//! volatile read or write of a fixed, documented, always-mapped peripheral
//! register address, 32 bits wide and 4-byte aligned (LM3S6965 datasheet,
//! "Register Map" tables of the System Control, UART and GPIO chapters).
#![allow(unsafe_code)]

use core::ptr::{read_volatile, write_volatile};

/// A 32-bit memory-mapped peripheral register.
#[derive(Clone, Copy)]
struct Reg(usize);

impl Reg {
    fn read(self) -> u32 {
        // SAFETY: `self.0` is one of the register addresses listed in this
        // module: mapped on every LM3S6965, aligned, and readable without side
        // effects except UARTDR (read only when RXFE says a byte is there).
        unsafe { read_volatile(self.0 as *const u32) }
    }

    fn write(self, value: u32) {
        // SAFETY: as in `read`; writes only set documented fields of
        // peripherals this firmware owns (no other code touches them).
        unsafe { write_volatile(self.0 as *mut u32, value) }
    }

    fn modify(self, f: impl FnOnce(u32) -> u32) {
        self.write(f(self.read()));
    }
}

/// System control: run-mode clock gating registers.
const RCGC1: Reg = Reg(0x400F_E104);
const RCGC2: Reg = Reg(0x400F_E108);

/// GPIO ports A–G.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(missing_docs, dead_code)]
pub enum Port {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
}

impl Port {
    const fn base(self) -> usize {
        match self {
            Port::A => 0x4000_4000,
            Port::B => 0x4000_5000,
            Port::C => 0x4000_6000,
            Port::D => 0x4000_7000,
            Port::E => 0x4002_4000,
            Port::F => 0x4002_5000,
            Port::G => 0x4002_6000,
        }
    }

    const fn index(self) -> u32 {
        self as u32
    }
}

const GPIO_DIR: usize = 0x400;
const GPIO_AFSEL: usize = 0x420;
const GPIO_DEN: usize = 0x51C;

/// Enables the clock of a GPIO port.
fn enable_port(port: Port) {
    RCGC2.modify(|v| v | (1 << port.index()));
}

/// Configures `pin` of `port` as a digital push-pull output, driven low.
pub fn gpio_output(port: Port, pin: u8) {
    enable_port(port);
    let base = port.base();
    gpio_write(port, pin, false);
    Reg(base + GPIO_AFSEL).modify(|v| v & !(1 << pin));
    Reg(base + GPIO_DIR).modify(|v| v | (1 << pin));
    Reg(base + GPIO_DEN).modify(|v| v | (1 << pin));
}

/// Drives `pin` of `port`. GPIODATA is address-masked: writing at offset
/// `(1 << pin) << 2` changes only that pin, so no read-modify-write is needed.
pub fn gpio_write(port: Port, pin: u8, high: bool) {
    let mask = 1u32 << pin;
    Reg(port.base() + ((mask as usize) << 2)).write(if high { mask } else { 0 });
}

/// Reads back the level of `pin` of `port`.
pub fn gpio_read(port: Port, pin: u8) -> bool {
    let mask = 1u32 << pin;
    Reg(port.base() + ((mask as usize) << 2)).read() & mask != 0
}

/// UART0 (PL011) registers.
mod uart0 {
    use super::Reg;
    pub const DR: Reg = Reg(0x4000_C000);
    pub const RSR: Reg = Reg(0x4000_C004);
    pub const FR: Reg = Reg(0x4000_C018);
    pub const IBRD: Reg = Reg(0x4000_C024);
    pub const FBRD: Reg = Reg(0x4000_C028);
    pub const LCRH: Reg = Reg(0x4000_C02C);
    pub const CTL: Reg = Reg(0x4000_C030);

    pub const FR_TXFF: u32 = 1 << 5;
    pub const FR_RXFE: u32 = 1 << 4;
    pub const DR_ERRORS: u32 = 0xF00; // OE, BE, PE, FE
    pub const LCRH_FEN: u32 = 1 << 4;
    pub const LCRH_WLEN_8: u32 = 0b11 << 5;
    pub const CTL_UARTEN: u32 = 1 << 0;
    pub const CTL_TXE: u32 = 1 << 8;
    pub const CTL_RXE: u32 = 1 << 9;
}

/// Sets up UART0 on PA0 (U0Rx) / PA1 (U0Tx): 115200 8N1 from a 12 MHz system
/// clock (QEMU ignores the rate), FIFOs enabled.
pub fn uart0_init() {
    RCGC1.modify(|v| v | 1);
    enable_port(Port::A);
    let a = Port::A.base();
    Reg(a + GPIO_AFSEL).modify(|v| v | 0b11);
    Reg(a + GPIO_DEN).modify(|v| v | 0b11);
    uart0::CTL.write(0);
    // 12 MHz / (16 * 115200) = 6.5104: IBRD 6, FBRD round(0.5104 * 64) = 33.
    uart0::IBRD.write(6);
    uart0::FBRD.write(33);
    uart0::LCRH.write(uart0::LCRH_WLEN_8 | uart0::LCRH_FEN);
    uart0::CTL.write(uart0::CTL_UARTEN | uart0::CTL_TXE | uart0::CTL_RXE);
}

/// A received byte, or `Err(())` for a byte with a framing, parity, break or
/// overrun error; `None` when the receive FIFO is empty.
pub fn uart0_read() -> Option<Result<u8, ()>> {
    if uart0::FR.read() & uart0::FR_RXFE != 0 {
        return None;
    }
    let dr = uart0::DR.read();
    if dr & uart0::DR_ERRORS != 0 {
        uart0::RSR.write(0); // clear the error flags
        return Some(Err(()));
    }
    Some(Ok(dr as u8))
}

/// Whether the receive FIFO holds a byte.
pub fn uart0_rx_ready() -> bool {
    uart0::FR.read() & uart0::FR_RXFE == 0
}

/// Whether the transmit FIFO has room for a byte.
pub fn uart0_tx_ready() -> bool {
    uart0::FR.read() & uart0::FR_TXFF == 0
}

/// Queues a byte in the transmit FIFO; the caller checks [`uart0_tx_ready`].
pub fn uart0_write(byte: u8) {
    uart0::DR.write(u32::from(byte));
}

/// Host wall-clock seconds via the semihosting `SYS_TIME` call: a session id
/// that differs between QEMU runs (QEMU RAM starts zeroed, so nothing else
/// survives). QEMU is always started with `-semihosting-config enable=on`;
/// on a real LM3S6965 without a debugger this call would fault.
pub fn host_time_s() -> u32 {
    // SAFETY: SYS_TIME (0x11) takes no argument block (0) and only returns a
    // value in r0; the semihosting host (QEMU) services the BKPT.
    unsafe { cortex_m_semihosting::syscall!(TIME) as u32 }
}

/// Bytes of stack used so far (high-water mark): cortex-m-rt's `paint-stack`
/// fills the stack with [`cortex_m_rt::heap_start`]-bounded 0xCCCCCCCC words at
/// reset; the lowest overwritten word marks the deepest use.
pub fn stack_high_water() -> usize {
    extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
    }
    // SAFETY: only the symbols' addresses are taken (set by cortex-m-rt's
    // link.x); the words between them are the stack region, always mapped
    // RAM, read with volatile word reads (possibly racing with interrupt
    // frames, which only makes the estimate conservative).
    unsafe {
        let start = core::ptr::addr_of!(_stack_start) as usize;
        let end = core::ptr::addr_of!(_stack_end) as usize;
        let mut p = end;
        while p < start && read_volatile(p as *const u32) == 0xCCCC_CCCC {
            p += 4;
        }
        start - p
    }
}
