//! Shared helpers for the integration tests in `tests/`.
//!
//! Use from a test file with `mod common;`. Everything here is general (no
//! LAN specifics) so every end-to-end test can use it:
//!
//! - [`cargo_bin`]: path of a binary of the workspace, built on first use.
//!   Integration tests of the root package cannot use
//!   `env!("CARGO_BIN_EXE_…")` for binaries of other packages, so the first
//!   call runs `cargo build -p <package> --bins` (the same cargo, profile and
//!   target directory as the running test; a no-op when up to date; cargo
//!   does not hold its build lock while tests run) and returns
//!   `<target>/<profile>/<name>`.
//! - [`Proc`]: a spawned child process that is killed and reaped when
//!   dropped (also when a test panics), with its stdout/stderr collected line
//!   by line so tests can wait for a line ([`Proc::wait_line`]) instead of
//!   sleeping, and print everything on failure.
//! - [`cargo_example`], [`package_example`]: the same for the examples of
//!   the root package or of another package ([`package_example_in`] builds
//!   them in another profile, e.g. [`release_dir`]).
//! - [`python`]: the python-banyan venv interpreter (`$BANYAN_PYTHON` or
//!   `<workspace>/.venv/bin/python`); panics with a clear message naming
//!   `bash scripts/venv.sh` when missing — tests that need Python fail, they
//!   never skip.
//! - [`free_port`], [`wait_until`], [`workspace_root`], [`routing_spec`].
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root (the root package's manifest directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<target>/<profile>` of the running test executable
/// (`<target>/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable is in <target>/<profile>/deps")
        .to_owned()
}

/// Runs `cargo build --quiet <args>` with the same cargo and target
/// directory as the running test, `--release` when `profile` is
/// `<target>/release`, once per test process and `(profile, args)`, and
/// returns `profile`.
///
/// # Panics
/// If the build fails (the build output is shown).
fn cargo_build(profile: &Path, args: &[&str]) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let key = format!("{} {}", profile.display(), args.join(" "));
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if !built.contains(&key) {
        let target_dir = profile.parent().expect("target dir").to_owned();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet"])
            .args(args)
            .arg("--target-dir")
            .arg(&target_dir);
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("running cargo build");
        assert!(
            out.status.success(),
            "cargo build {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        built.push(key);
    }
    profile.to_owned()
}

/// `path`, which a build has just made.
///
/// # Panics
/// If it does not exist.
fn built(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} not found after building", path.display());
    path
}

/// Path of binary `name` of workspace package `package`, built once per test
/// process (see the module docs).
///
/// # Panics
/// If the build fails (the build output is shown).
pub fn cargo_bin(package: &str, name: &str) -> PathBuf {
    built(cargo_build(&profile_dir(), &["-p", package, "--bins"]).join(name))
}

/// Path of example `name` of the root package, built (all examples) once
/// per test process like [`cargo_bin`].
///
/// # Panics
/// If the build fails.
pub fn cargo_example(name: &str) -> PathBuf {
    package_example("banyan", name)
}

/// Path of example `name` of workspace package `package`, built once per
/// test process like [`cargo_bin`].
///
/// # Panics
/// If the build fails.
pub fn package_example(package: &str, name: &str) -> PathBuf {
    package_example_in(&profile_dir(), package, name)
}

/// [`package_example`] built in `profile` (`<target>/debug` or
/// `<target>/release`, see [`release_dir`]) whatever the test's own profile.
///
/// # Panics
/// If the build fails.
pub fn package_example_in(profile: &Path, package: &str, name: &str) -> PathBuf {
    let profile = cargo_build(profile, &["-p", package, "--examples"]);
    built(profile.join("examples").join(name))
}

/// `<target>/release` of the running test's target directory.
pub fn release_dir() -> PathBuf {
    profile_dir().parent().expect("target dir").join("release")
}

/// Writes a routing spec (Python Banyan's CSV) for backplanes `BP1` and
/// `BP2` on 127.0.0.1, each given as `(subscriber port, subscriber topic,
/// publisher port)`, to `spec.csv` in a new directory `<tmp>/<name>-<pid>`;
/// returns the directory (remove it when done) and the file.
pub fn routing_spec(name: &str, backplanes: [(u16, &str, u16); 2]) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("spec.csv");
    let [(s1, t1, p1), (s2, t2, p2)] = backplanes;
    std::fs::write(
        &spec,
        format!(
            "backplane_name,ip_address,subscriber_port,subscriber_topic,publisher_port\n\
             BP1,127.0.0.1,{s1},\"[{t1}]\",{p1}\nBP2,127.0.0.1,{s2},\"[{t2}]\",{p2}\n"
        ),
    )
    .unwrap();
    (dir, spec)
}

/// The Python interpreter of the python-banyan venv.
///
/// # Panics
/// When it does not exist, with the command that creates it.
pub fn python() -> PathBuf {
    let path = std::env::var_os("BANYAN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "python-banyan venv not found at {} — create it with `bash scripts/venv.sh` \
         (or set BANYAN_PYTHON to a python with python-banyan==3.17, msgpack and pyzmq)",
        path.display()
    );
    path
}

/// The port at the end of a banner line (`Subscriber Port = 43125`).
pub fn port_from(line: &str) -> u16 {
    line.rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// A TCP port that was free a moment ago (bind to port 0 where possible
/// instead; use this only for programs that cannot report their port).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Calls `ready` until it returns true or `timeout` passes (checking every
/// 10 ms). Returns whether it became true.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process killed and reaped on drop, with its output collected.
pub struct Proc {
    name: String,
    child: Option<Child>,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    /// One message per output stream when it reaches end of file.
    eof: Receiver<()>,
    eofs_seen: usize,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr captured (stdin closed).
    ///
    /// # Panics
    /// If the program cannot be started.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let (tx, rx) = channel();
        let (eof_tx, eof_rx) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, tag) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, ""),
            (Box::new(stderr), "[stderr] "),
        ] {
            let tx = tx.clone();
            let eof_tx = eof_tx.clone();
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{tag}{line}"));
                    if tag.is_empty() {
                        let _ = tx.send(line);
                    }
                }
                let _ = eof_tx.send(());
            });
        }
        Proc {
            name: name.to_owned(),
            child: Some(child),
            lines: rx,
            log,
            eof: eof_rx,
            eofs_seen: 0,
        }
    }

    /// Everything the process printed so far (stderr lines tagged).
    pub fn output(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Waits for the next stdout line matching `pred` and returns it,
    /// skipping others.
    ///
    /// # Panics
    /// On timeout or if the process closed stdout, showing its output.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: expected line not printed within {timeout:?}; output:\n{}",
                    self.name,
                    self.output()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    // Give the stderr reader a moment to finish for the report.
                    std::thread::sleep(Duration::from_millis(50));
                    panic!(
                        "{}: exited before printing the expected line; status {:?}; output:\n{}",
                        self.name,
                        self.child
                            .as_mut()
                            .and_then(|c| c.try_wait().ok().flatten()),
                        self.output()
                    )
                }
            }
        }
    }

    /// Waits until everything printed so far (stdout and stderr, see
    /// [`Proc::output`]) satisfies `pred`, e.g. a line on stderr.
    ///
    /// # Panics
    /// On timeout, showing the output.
    pub fn wait_output(&self, timeout: Duration, pred: impl Fn(&str) -> bool) {
        assert!(
            wait_until(timeout, || pred(&self.output())),
            "{}: expected output not printed within {timeout:?}; output:\n{}",
            self.name,
            self.output()
        );
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal by name (`INT`, `TERM`, …) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit and returns its status;
    /// by then everything it printed is in [`Proc::output`] (the output
    /// readers have reached end of file, unless a grandchild keeps the pipes
    /// open, in which case this gives up on them after 5 s).
    ///
    /// # Panics
    /// On timeout (the process is then killed by drop), showing its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("process already reaped");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let until = Instant::now() + Duration::from_secs(5);
                while self.eofs_seen < 2 {
                    let left = until.saturating_duration_since(Instant::now());
                    match self.eof.recv_timeout(left) {
                        Ok(()) => self.eofs_seen += 1,
                        Err(_) => break,
                    }
                }
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: did not exit within {timeout:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Waits (up to 20 s) until the services broker `b` lists `n` workers for
/// `service`; panics with what it lists otherwise.
pub fn wait_workers(b: &banyan_services::broker::Handle, service: &str, n: u64) {
    assert!(
        wait_until(Duration::from_secs(20), || b
            .services()
            .iter()
            .any(|s| s.service == service && s.workers == n)),
        "{service}: expected {n} workers, have {:?}",
        b.services()
    );
}
