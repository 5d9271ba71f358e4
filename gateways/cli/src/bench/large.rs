//! `banyan-bench large`: one publisher sends `count` messages whose payload
//! is a MessagePack `bin` of `size` bytes, as fast as it can, to one
//! subscriber through a backplane (ours, or any XSUB/XPUB proxy such as
//! pyzmq's `zmq.proxy`); prints the payload MB/s delivered and what was
//! lost. `scripts/bench-large.sh` runs it against both with peak RSS.

use std::error::Error;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use banyan_component::{Component, Config};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// A MessagePack `bin` of `size` bytes (header + payload).
pub fn bin_payload(size: usize) -> BoxResult<Vec<u8>> {
    let mut v = Vec::with_capacity(size + 5);
    if let Ok(n) = u8::try_from(size) {
        v.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(size) {
        v.push(0xc5);
        v.extend_from_slice(&n.to_be_bytes());
    } else {
        let n = u32::try_from(size).map_err(|_| "--size must fit in 32 bits")?;
        v.push(0xc6);
        v.extend_from_slice(&n.to_be_bytes());
    }
    v.resize(v.len() + size, 0x55);
    Ok(v)
}

/// Runs the burst and prints one `large:` line.
pub fn large(config: Config, size: usize, count: u64, idle: Duration) -> BoxResult<()> {
    let payload = bin_payload(size)?;
    let mut subscriber = Component::connect(config.clone())?;
    subscriber.subscribe("bulk")?;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let receiver = std::thread::spawn(
        move || -> Result<(u64, u64, u64, u64, Option<Instant>), String> {
            let _ = ready_tx.send(());
            let (mut received, mut bytes, mut wrong) = (0u64, 0u64, 0u64);
            let mut last = None;
            // Stop after `idle` without a message.
            while let Some(m) = subscriber.recv_timeout(idle).map_err(|e| e.to_string())? {
                if m.payload.len() != size + 5 - header_gap(size) {
                    wrong += 1;
                }
                received += 1;
                bytes += m.payload.len() as u64;
                last = Some(Instant::now());
                if received == count {
                    break;
                }
            }
            let stats = subscriber.stats();
            let bad = wrong + stats.rejected;
            Ok((received, bytes, bad, stats.heartbeat_expired, last))
        },
    );
    ready_rx.recv()?;
    let mut publisher = Component::connect(config)?;
    if !publisher.wait_for_subscriber("bulk", Duration::from_secs(10))? {
        return Err("the subscriber did not connect within 10 s".into());
    }
    let start = Instant::now();
    let mut refused = 0u64;
    for _ in 0..count {
        if publisher.publish_raw("bulk", &payload).is_err() {
            refused += 1;
        }
    }
    let sent_in = start.elapsed();
    let (received, bytes, bad, expired, last) =
        receiver.join().map_err(|_| "receiver panicked")??;
    let elapsed = last.map_or(sent_in, |l| l - start).as_secs_f64();
    let lost = count - received;
    let payload_bytes = received as f64 * size as f64;
    say!(
        "large: {size} B payloads: {count} sent in {:.3} s, {received} received in {elapsed:.3} s = {:.1} MB/s ({:.0} msgs/s); lost {lost}; send queue full {refused}; bad {bad}; {bytes} bytes with headers; subscriber heartbeat expiries {expired}",
        sent_in.as_secs_f64(),
        payload_bytes / elapsed / 1e6,
        received as f64 / elapsed,
    )?;
    Ok(())
}

/// How many bytes shorter than 5 the `bin` header of `size` is.
fn header_gap(size: usize) -> usize {
    if size <= 0xff {
        3
    } else if size <= 0xffff {
        2
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_payloads_are_valid_messagepack_of_the_size() {
        for size in [0, 16, 255, 256, 1024, 65535, 65536, 1 << 20] {
            let p = bin_payload(size).unwrap();
            assert_eq!(p.len(), size + 5 - header_gap(size), "size {size}");
            let v = banyan_component::wire::Message::new("t", p)
                .value()
                .unwrap();
            assert_eq!(v.as_slice().map(<[u8]>::len), Some(size));
        }
    }
}
