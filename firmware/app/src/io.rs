//! Non-blocking byte pumping between a UART and the application.
//!
//! The application never blocks on the UART: [`App::poll`](crate::App::poll)
//! reads only what `ReadReady` says is there, and [`TxQueue::flush_ready`]
//! writes only while [`WriteReady`] says the transmitter has room, so a long
//! report never stalls reception (and the receive FIFO does not overflow
//! while a frame is being sent).

use embedded_io::{Write, WriteReady};
use heapless::Deque;

/// Bytes read from the UART in one go (one stack buffer per poll).
pub const READ_CHUNK: usize = 64;

/// Counters of the byte pump; every drop is counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Bytes received from the UART.
    pub rx_bytes: u32,
    /// Bytes written to the UART.
    pub tx_bytes: u32,
    /// Outgoing frames that did not fit in the transmit queue and were dropped.
    pub tx_dropped: u32,
    /// UART read or write errors (overrun, framing, break, ...).
    pub uart_errors: u32,
}

/// A fixed-capacity transmit queue.
pub struct TxQueue<const N: usize> {
    queue: Deque<u8, N>,
}

impl<const N: usize> Default for TxQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TxQueue<N> {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            queue: Deque::new(),
        }
    }

    /// Free space in bytes.
    pub fn free(&self) -> usize {
        N - self.queue.len()
    }

    /// Queued bytes.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues `bytes` whole, or nothing when they do not fit.
    ///
    /// # Errors
    /// Returns `Err(())` (and queues nothing) when `bytes` exceeds [`free`](Self::free).
    #[allow(clippy::result_unit_err)]
    pub fn try_push(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() > self.free() {
            return Err(());
        }
        for &b in bytes {
            // Cannot fail: checked above.
            let _ = self.queue.push_back(b);
        }
        Ok(())
    }

    /// Writes queued bytes while the UART has room; never blocks.
    ///
    /// # Errors
    /// The UART's write error; the unsent bytes stay queued.
    pub fn flush_ready<U: Write + WriteReady>(
        &mut self,
        uart: &mut U,
        stats: &mut Stats,
    ) -> Result<(), U::Error> {
        while !self.queue.is_empty() && uart.write_ready()? {
            let (front, _) = self.queue.as_slices();
            let n = uart.write(front)?;
            if n == 0 {
                break;
            }
            for _ in 0..n {
                self.queue.pop_front();
            }
            stats.tx_bytes = stats.tx_bytes.wrapping_add(n as u32);
        }
        Ok(())
    }
}
