//! ZMTP conformance peer over zmq.rs (crate `zeromq`, ZMTP 3.0, async):
//! the line protocol of `tests/zmtp_peers/README.md`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zeromq::{
    PubSocket, Socket, SocketRecv, SocketSend, SubSocket, XPubSocket, XSubSocket, ZmqMessage,
};

enum Sock {
    Pub(PubSocket),
    Sub(SubSocket),
    XPub(XPubSocket),
    XSub(XSubSocket),
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s == "-" {
        return Ok(Vec::new());
    }
    if s.len() % 2 != 0 || !s.is_ascii() {
        return Err(format!("bad hex {s:?}"));
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| format!("{e}")))
        .collect()
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn topic(s: &str) -> Result<String, String> {
    String::from_utf8(unhex(s)?).map_err(|_| "zmq.rs takes UTF-8 topics only".into())
}

async fn handle(sockets: &mut HashMap<String, Sock>, w: &[&str]) -> Result<String, String> {
    let arg = |i: usize| {
        w.get(i)
            .copied()
            .ok_or_else(|| "missing argument".to_string())
    };
    let err = |e: zeromq::ZmqError| format!("{e}");
    match w[0] {
        "version" => Ok("version zmq.rs (crate zeromq 0.7, ZMTP 3.0)".into()),
        "socket" => {
            let endpoint = arg(3)?;
            let s = match arg(2)? {
                "PUB" => {
                    let mut s = PubSocket::new();
                    s.connect(endpoint).await.map_err(err)?;
                    Sock::Pub(s)
                }
                "SUB" => {
                    let mut s = SubSocket::new();
                    s.connect(endpoint).await.map_err(err)?;
                    Sock::Sub(s)
                }
                "XPUB" => {
                    let mut s = XPubSocket::new();
                    s.connect(endpoint).await.map_err(err)?;
                    Sock::XPub(s)
                }
                "XSUB" => {
                    let mut s = XSubSocket::new();
                    s.connect(endpoint).await.map_err(err)?;
                    Sock::XSub(s)
                }
                t => return Err(format!("socket type {t}")),
            };
            sockets.insert(arg(1)?.to_owned(), s);
            Ok("ok".into())
        }
        "sub" | "unsub" => {
            let t = topic(arg(2)?)?;
            let sub = w[0] == "sub";
            match sockets.get_mut(arg(1)?) {
                Some(Sock::Sub(s)) if sub => s.subscribe(&t).await.map_err(err)?,
                Some(Sock::Sub(s)) => s.unsubscribe(&t).await.map_err(err)?,
                Some(Sock::XSub(s)) if sub => s.subscribe(&t).await.map_err(err)?,
                Some(Sock::XSub(s)) => s.unsubscribe(&t).await.map_err(err)?,
                _ => return Err("not a SUB/XSUB socket".into()),
            }
            Ok("ok".into())
        }
        "send" => {
            let frames = w[2..]
                .iter()
                .map(|f| unhex(f).map(Bytes::from))
                .collect::<Result<Vec<_>, _>>()?;
            let m = ZmqMessage::try_from(frames).map_err(|_| "empty message".to_string())?;
            match sockets.get_mut(arg(1)?) {
                Some(Sock::Pub(s)) => s.send(m).await.map_err(err)?,
                Some(Sock::XPub(s)) => s.send(m).await.map_err(err)?,
                Some(Sock::XSub(s)) => s.send(m).await.map_err(err)?,
                _ => return Err("cannot send on this socket".into()),
            }
            Ok("ok".into())
        }
        "recv" => {
            let timeout = Duration::from_millis(arg(2)?.parse().map_err(|_| "timeout")?);
            let got = match sockets.get_mut(arg(1)?) {
                Some(Sock::Sub(s)) => tokio::time::timeout(timeout, s.recv()).await,
                Some(Sock::XSub(s)) => tokio::time::timeout(timeout, s.recv()).await,
                Some(Sock::XPub(s)) => tokio::time::timeout(timeout, s.recv()).await,
                _ => return Err("cannot receive on this socket".into()),
            };
            match got {
                Err(_) => Ok("timeout".into()),
                Ok(Err(e)) => Err(err(e)),
                Ok(Ok(m)) => {
                    let frames: Vec<String> = m.iter().map(|f| hex(f)).collect();
                    Ok(format!("msg {}", frames.join(" ")))
                }
            }
        }
        "close" => {
            sockets.remove(arg(1)?);
            Ok("ok".into())
        }
        c => Err(format!("unknown command {c}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut sockets = HashMap::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.is_empty() {
            continue;
        }
        let reply = match handle(&mut sockets, &w).await {
            Ok(r) => r,
            Err(e) => format!("error {e}"),
        };
        let _ = out.write_all(format!("{reply}\n").as_bytes()).await;
        let _ = out.flush().await;
    }
}
