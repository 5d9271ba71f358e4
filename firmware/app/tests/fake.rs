//! Host tests of the application against a fake UART.

use banyan_firmware_app::{App, HELLO};
use std::collections::VecDeque;

/// An in-memory UART: `rx` is what the peer sent, `tx` what the app wrote.
/// `tx_room` limits how many bytes one `write` accepts (like a FIFO).
#[derive(Default)]
struct FakeUart {
    rx: VecDeque<u8>,
    tx: Vec<u8>,
    tx_room: usize,
}

impl embedded_io::ErrorType for FakeUart {
    type Error = core::convert::Infallible;
}
impl embedded_io::Read for FakeUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.rx.len());
        for b in buf.iter_mut().take(n) {
            *b = self.rx.pop_front().unwrap();
        }
        Ok(n)
    }
}
impl embedded_io::ReadReady for FakeUart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.rx.is_empty())
    }
}
impl embedded_io::Write for FakeUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.tx_room);
        self.tx.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
impl embedded_io::WriteReady for FakeUart {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.tx_room > 0)
    }
}

#[test]
fn greets_then_echoes_in_small_fifo_chunks() {
    let mut uart = FakeUart {
        tx_room: 4,
        ..Default::default()
    };
    let mut app = App::new();
    uart.rx.extend(b"ping");
    for t in 0..20 {
        app.poll(t, &mut uart);
    }
    let mut want = HELLO.to_vec();
    want.extend_from_slice(b"ping");
    assert_eq!(uart.tx, want);
    assert_eq!(app.stats().rx_bytes, 4);
    assert_eq!(app.stats().tx_bytes as usize, want.len());
}
