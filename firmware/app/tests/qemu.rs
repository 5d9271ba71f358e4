//! Runs the lm3s6965 firmware under QEMU and talks to it over its UART (a TCP
//! port). Needs `qemu-system-arm` and the release firmware ELF, so it is
//! ignored by a plain `cargo test`; scripts/ci.d/50-firmware.sh runs it with
//! `-- --ignored` after building the firmware.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills QEMU when dropped, also when the test fails.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn firmware_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts QEMU with the firmware's UART0 on a free local port; returns the
/// guard and a connected stream.
fn start() -> (Qemu, TcpStream) {
    let elf = std::env::var_os("BANYAN_FIRMWARE_ELF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            firmware_dir().join("target/thumbv7m-none-eabi/release/banyan-firmware-qemu")
        });
    assert!(
        elf.exists(),
        "firmware ELF {} missing: build it with `cd firmware/boards/qemu && cargo build --release` \
         (or run scripts/ci.d/50-firmware.sh)",
        elf.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(firmware_dir().join("run-qemu.sh"))
        .arg(port.to_string())
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start run-qemu.sh (is qemu-system-arm installed?)");
    let mut qemu = Qemu(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                if let Ok(Some(status)) = qemu.0.try_wait() {
                    panic!("qemu exited early ({status}) before its UART port opened");
                }
                assert!(Instant::now() < deadline, "qemu UART port {port}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    (qemu, stream)
}

/// Reads until the received bytes end with `want` (the greeting may or may
/// not come first: QEMU drops UART output while no client is connected).
fn read_until_suffix(stream: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(want) {
        stream
            .read_exact(&mut byte)
            .unwrap_or_else(|e| panic!("read from firmware UART after {got:?}: {e}"));
        got.push(byte[0]);
        assert!(got.len() < 4096, "no echo in {got:?}");
    }
    got
}

#[test]
#[ignore = "needs qemu-system-arm and the firmware ELF; run by scripts/ci.d/50-firmware.sh"]
fn firmware_echoes_over_uart() {
    let (_qemu, mut uart) = start();
    uart.write_all(b"ping over qemu").unwrap();
    let got = read_until_suffix(&mut uart, b"ping over qemu");
    let before = &got[..got.len() - 14];
    assert!(
        banyan_firmware_app::HELLO.ends_with(before),
        "unexpected bytes before the echo: {before:?}"
    );
}
