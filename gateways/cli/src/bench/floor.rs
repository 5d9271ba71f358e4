//! `banyan-bench tcp-floor`: what an echo round trip through a relay costs
//! on this machine with nothing but the four loopback TCP hops (client →
//! relay → echo server → relay → client), each side blocked in `read`
//! (no protocol, no `poll`, no encoding). Every message bus run the same
//! hops (the backplane, mosquitto), so no bus beats this median: it is the
//! floor the `latency` and `mqtt-latency` figures stand on.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes per message: about what `{"value": i}` takes on the wire as a
/// two-frame ZMTP message.
const SIZE: usize = 16;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn nodelay(s: TcpStream) -> io::Result<TcpStream> {
    s.set_nodelay(true)?;
    Ok(s)
}

/// Passes each message from `from` to `to` and the answer back, until a
/// side closes.
fn relay(mut from: TcpStream, mut to: TcpStream) -> io::Result<()> {
    let mut b = [0u8; SIZE];
    loop {
        if from.read_exact(&mut b).is_err() {
            return Ok(());
        }
        to.write_all(&b)?;
        if to.read_exact(&mut b).is_err() {
            return Ok(());
        }
        from.write_all(&b)?;
    }
}

/// Sends each message back until the other side closes.
fn echo(mut s: TcpStream) -> io::Result<()> {
    let mut b = [0u8; SIZE];
    while s.read_exact(&mut b).is_ok() {
        s.write_all(&b)?;
    }
    Ok(())
}

fn join(t: JoinHandle<io::Result<()>>, who: &str) -> BoxResult<()> {
    t.join().map_err(|_| format!("{who} panicked"))??;
    Ok(())
}

/// `count` round trips (after 100 warm-up ones) through a relay thread to
/// an echo thread, on ephemeral ports of 127.0.0.1; returns their times.
pub fn floor(count: usize) -> BoxResult<Vec<Duration>> {
    let clients = TcpListener::bind("127.0.0.1:0")?;
    let servers = TcpListener::bind("127.0.0.1:0")?;
    let server_addr = servers.local_addr()?;
    let mut client = nodelay(TcpStream::connect(clients.local_addr()?)?)?;
    let server = std::thread::spawn(move || echo(nodelay(TcpStream::connect(server_addr)?)?));
    let (from, _) = clients.accept()?;
    let (to, _) = servers.accept()?;
    let relay = {
        let (from, to) = (nodelay(from)?, nodelay(to)?);
        std::thread::spawn(move || relay(from, to))
    };
    let mut rtts = Vec::with_capacity(count);
    let mut b = [0u8; SIZE];
    for i in 0..count + 100 {
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t0 = Instant::now();
        client.write_all(&b)?;
        client.read_exact(&mut b)?;
        let rtt = t0.elapsed();
        if b[..8] != (i as u64).to_le_bytes() {
            return Err(format!("reply to round trip {i} was another's").into());
        }
        if i >= 100 {
            rtts.push(rtt);
        }
    }
    drop(client);
    join(relay, "the relay")?;
    join(server, "the echo server")?;
    Ok(rtts)
}
