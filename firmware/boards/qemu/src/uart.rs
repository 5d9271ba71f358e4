//! UART0 as an `embedded-io` byte stream.

use crate::hw;

/// A byte received with a framing, parity, break or overrun error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineError;

impl embedded_io::Error for LineError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::InvalidData
    }
}

/// UART0 (PL011, PA0/PA1), FIFOs on.
pub struct Uart0(());

impl Uart0 {
    /// Initialises UART0. Call once.
    pub fn new() -> Self {
        hw::uart0_init();
        Self(())
    }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = LineError;
}

impl embedded_io::ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, LineError> {
        Ok(hw::uart0_rx_ready())
    }
}

impl embedded_io::Read for Uart0 {
    /// Blocks until one byte is there (as `embedded-io` requires), then takes
    /// whatever the FIFO holds, up to `buf.len()`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LineError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        while n < buf.len() {
            match hw::uart0_read() {
                Some(Ok(b)) => {
                    buf[n] = b;
                    n += 1;
                }
                Some(Err(())) if n == 0 => return Err(LineError),
                // Report the bad byte on the next call; hand over what we have.
                Some(Err(())) => return Ok(n),
                None if n == 0 => continue,
                None => break,
            }
        }
        Ok(n)
    }
}

impl embedded_io::WriteReady for Uart0 {
    fn write_ready(&mut self) -> Result<bool, LineError> {
        Ok(hw::uart0_tx_ready())
    }
}

impl embedded_io::Write for Uart0 {
    /// Blocks until the FIFO takes one byte, then fills it without blocking.
    fn write(&mut self, buf: &[u8]) -> Result<usize, LineError> {
        let mut n = 0;
        for &b in buf {
            if n > 0 && !hw::uart0_tx_ready() {
                break;
            }
            while !hw::uart0_tx_ready() {}
            hw::uart0_write(b);
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), LineError> {
        Ok(())
    }
}
