//! Python's msgpack as the reference decoder, shared by the property tests
//! of the core (`core/tests/msg_prop.rs`) and the component encoder tests
//! (`tests/encode_python.rs`), which include this file with `#[path]`. Each
//! passes its own Python interpreter (the reference venv; missing is a
//! failure, never a skip).
#![allow(dead_code)] // each includer uses a part

use std::path::Path;

/// Runs Python's `unpackb(raw=False)` on each payload; per payload
/// `Ok(repacked bytes)` (Python's `packb(use_bin_type=True)` of what it
/// decoded) or `Err(exception name)`.
pub fn python_repack(python: &Path, payloads: &[Vec<u8>]) -> Vec<Result<Vec<u8>, String>> {
    const SCRIPT: &str = r#"
import sys, msgpack
for line in open(sys.argv[1]):
    b = bytes.fromhex(line.strip())
    try:
        v = msgpack.unpackb(b, raw=False)
    except Exception as e:
        print("err", type(e).__name__)
        continue
    print("ok", msgpack.packb(v, use_bin_type=True).hex())
"#;
    // Unique per call: tests run in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "banyan-python-repack-{}-{call}.hex",
        std::process::id()
    ));
    let lines: String = payloads.iter().map(|p| hex(p) + "\n").collect();
    std::fs::write(&path, lines).unwrap();
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.expect("running the Python reference");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l.split_once(' ') {
            Some(("ok", h)) => Ok(unhex(h)),
            Some(("err", name)) => Err(name.to_string()),
            _ => panic!("unexpected python output {l:?}"),
        })
        .collect();
    assert_eq!(verdicts.len(), payloads.len());
    verdicts
}

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex `s` (even length).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
