//! # banyan-firmware-app
//!
//! The board-independent part of the banyan-rs firmware. A board crate
//! (`boards/qemu`, `boards/pico`) sets up clocks, the UART and the pins, then
//! calls [`App::poll`] in its main loop with the current time in
//! milliseconds. Everything here is `no_std`, allocation-free and testable on
//! the host with fake UARTs and pins.
//!
//! Layers:
//! - [`io`]: non-blocking byte pumping (read what is ready, write while
//!   the transmitter has room) with counters.
//! - [`App`]: the application state machine.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod io;

use embedded_io::{Read, ReadReady, Write, WriteReady};

/// The greeting sent once after reset.
pub const HELLO: &[u8] = b"banyan-firmware hello\n";

/// Capacity of the transmit queue in bytes.
pub const TX_CAPACITY: usize = 512;

/// The firmware application.
pub struct App {
    tx: io::TxQueue<TX_CAPACITY>,
    stats: io::Stats,
    greeted: bool,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// A freshly reset application.
    pub const fn new() -> Self {
        Self {
            tx: io::TxQueue::new(),
            stats: io::Stats {
                rx_bytes: 0,
                tx_bytes: 0,
                tx_dropped: 0,
                uart_errors: 0,
            },
            greeted: false,
        }
    }

    /// Byte pump counters.
    pub fn stats(&self) -> io::Stats {
        self.stats
    }

    /// Runs one step: reads what the UART has ready, reacts, and writes what
    /// the UART can take. Never blocks and never panics; UART errors are
    /// counted and the step goes on.
    pub fn poll<U>(&mut self, _now_ms: u64, uart: &mut U)
    where
        U: Read + ReadReady + Write + WriteReady,
    {
        if !self.greeted {
            self.greeted = true;
            self.queue(HELLO);
        }
        let tx = &mut self.tx;
        let stats = &mut self.stats;
        let mut dropped = 0u32;
        if io::read_ready(uart, stats, |bytes| {
            if tx.try_push(bytes).is_err() {
                dropped = dropped.wrapping_add(bytes.len() as u32);
            }
        })
        .is_err()
        {
            self.stats.uart_errors = self.stats.uart_errors.wrapping_add(1);
        }
        self.stats.tx_dropped = self.stats.tx_dropped.wrapping_add(dropped);
        if self.tx.flush_ready(uart, &mut self.stats).is_err() {
            self.stats.uart_errors = self.stats.uart_errors.wrapping_add(1);
        }
    }

    fn queue(&mut self, bytes: &[u8]) {
        if self.tx.try_push(bytes).is_err() {
            self.stats.tx_dropped = self.stats.tx_dropped.wrapping_add(bytes.len() as u32);
        }
    }
}
