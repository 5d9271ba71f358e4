//! A millisecond clock from SysTick.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::exception;

/// System clock in Hz (LM3S6965 after reset, as QEMU models it).
pub const SYSCLK_HZ: u32 = 12_000_000;

static TICKS_MS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS_MS.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since [`Clock::start`], widened to 64 bits.
pub struct Clock {
    last: u32,
    high: u64,
}

impl Clock {
    /// Starts SysTick at 1 kHz; its interrupt also wakes the main loop's `wfi`.
    pub fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(SYSCLK_HZ / 1000 - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Self { last: 0, high: 0 }
    }

    /// The current time in milliseconds (monotonic; call at least every 49 days).
    pub fn now_ms(&mut self) -> u64 {
        let now = TICKS_MS.load(Ordering::Relaxed);
        if now < self.last {
            self.high += 1 << 32;
        }
        self.last = now;
        self.high | u64::from(now)
    }
}

/// Milliseconds since start, for defmt timestamps (wraps after 49 days).
pub fn ticks_ms() -> u32 {
    TICKS_MS.load(Ordering::Relaxed)
}
