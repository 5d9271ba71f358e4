//! # banyan-cli
//!
//! The `banyan` command: everything a user does with banyan-rs from a shell.
//!
//! | subcommand | what it does |
//! | --- | --- |
//! | `banyan backplane` | runs the backplane (Python Banyan's `backplane`) |
//! | `banyan sub` / `banyan monitor` | prints messages, human lines or `--json` lines |
//! | `banyan pub TOPIC JSON` | publishes (once, `--count N`, `--rate HZ`, or JSON lines from stdin) |
//! | `banyan topics` | every topic with msgs/s, bytes/s, last seen and subscribers |
//! | `banyan rpi-gateway` | the Raspberry Pi GPIO gateway |
//! | `banyan serial-gateway` | the microcontroller (serial link) gateway |
//! | `banyan launch FILE` | starts a whole robot from a TOML file or a `bls` CSV |
//! | `banyan completions SHELL`, `banyan man` | shell completions and man pages |
//!
//! One flag vocabulary everywhere: `-b/--backplane HOST` (or
//! `$BANYAN_BACKPLANE`), `-p` publisher port, `-s` subscriber port,
//! `-n/--name`. Data goes to stdout; banners, logs, connection feedback and
//! summaries go to stderr. Every subcommand exits cleanly on SIGINT/SIGTERM
//! and never panics on a closed, full or dead stdout/stderr. See
//! `docs/cli.md`.
//!
//! The modules are the subcommands; [`main`] is the whole program (the
//! `banyan` binary is one call to it).
#![deny(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub mod args;
pub mod backplane;
pub mod discover;
pub mod json;
pub mod launch;
pub mod output;
pub mod publish;
pub mod rpi;
pub mod serial;
pub mod services;
pub mod sub;
pub mod topics;

pub use output::{Failure, Result};

/// banyan: publish/subscribe for robots (Python Banyan compatible).
///
/// Run `banyan backplane` once, then components, gateways and the tools
/// below connect to it (`-b HOST` or $BANYAN_BACKPLANE when it runs on
/// another machine).
#[derive(Debug, Parser)]
#[command(
    name = "banyan",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Docs: docs/cli.md (installed in /usr/share/doc/banyan/)."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG=LEVEL also works.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr (no banners, connection notices or summaries).
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a backplane: components publish to its publisher port (43124) and
    /// subscribe on its subscriber port (43125).
    Backplane(backplane::Args),
    /// Print messages from the backplane (all topics, or those under the
    /// given prefixes), as human lines or JSON lines.
    #[command(visible_alias = "monitor")]
    Sub(sub::Args),
    /// Publish a message (JSON payload) once, N times, at a rate, or one per
    /// JSON line read from stdin.
    Pub(publish::Args),
    /// List the topics on the backplane with their rates, last message and
    /// subscriber count.
    Topics(topics::Args),
    /// Drive a Raspberry Pi's GPIO (motors, LEDs, OneGPIO commands) from the
    /// backplane; simulated pins off a Pi or with --sim.
    RpiGateway(rpi::Args),
    /// Put a microcontroller running the banyan-rs firmware on the backplane
    /// over a serial port (or tcp:HOST:PORT for QEMU).
    SerialGateway(serial::Args),
    /// List everything in the discovery pool (backplanes, components,
    /// gateways, devices), show one node's identity, or watch joins and
    /// leaves (docs/discovery.md).
    Ls(discover::Args),
    /// Call a service through the backplane's broker with a JSON body and
    /// print the reply (docs/services.md).
    Call(services::CallArgs),
    /// List the services the broker knows, with their workers.
    Services(services::ListArgs),
    /// Run ZeroMQ's queue (ROUTER/DEALER) or streamer (PULL/PUSH) device.
    Devices(services::DeviceArgs),
    /// Start a whole robot from one file: a TOML robot file or Python
    /// Banyan's `bls` launch CSV; `--systemd DIR` writes units instead.
    Launch(launch::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (banyan.1), or write one page per subcommand into
    /// a directory.
    Man {
        /// Write banyan.1 and banyan-SUBCOMMAND.1 files here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

impl Command {
    /// The subcommand's name as typed (`rpi-gateway`), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Backplane(_) => "backplane",
            Command::Sub(_) => "sub",
            Command::Pub(_) => "pub",
            Command::Topics(_) => "topics",
            Command::RpiGateway(_) => "rpi-gateway",
            Command::SerialGateway(_) => "serial-gateway",
            Command::Launch(_) => "launch",
            Command::Ls(_) => "ls",
            Command::Call(_) => "call",
            Command::Services(_) => "services",
            Command::Devices(_) => "devices",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}

/// Older names: a link or copy of the binary named `banyan-backplane`,
/// `banyan-monitor`, … runs that subcommand (the names python-banyan's
/// console scripts use, `backplane` and `monitor`, are never taken).
fn argv0_subcommand(args: &mut Vec<OsString>) {
    let Some(first) = args.first() else { return };
    let Some(file) = std::path::Path::new(first)
        .file_name()
        .and_then(|f| f.to_str())
    else {
        return;
    };
    let sub = match file {
        "banyan-backplane" => "backplane",
        "banyan-monitor" => "monitor",
        "banyan-sub" => "sub",
        "banyan-pub" => "pub",
        "banyan-topics" => "topics",
        "banyan-rpi-gateway" => "rpi-gateway",
        "banyan-serial-gateway" => "serial-gateway",
        "banyan-launch" => "launch",
        _ => return,
    };
    if let Some(first) = args.first_mut() {
        *first = OsString::from("banyan");
    }
    args.insert(1.min(args.len()), OsString::from(sub));
}

/// The `banyan` program: parses the command line and runs the subcommand.
/// Errors are printed on stderr as `banyan SUBCOMMAND: error: …`; the exit
/// code is 0 on success (also after SIGINT/SIGTERM and when stdout's reader
/// went away), 2 for usage and configuration errors, 1 otherwise.
pub fn main() -> ExitCode {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    argv0_subcommand(&mut argv);
    // `banyan monitor` says "banyan monitor" in its messages.
    let typed_monitor = argv
        .iter()
        .skip(1)
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .is_some_and(|a| a == "monitor");
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // --help/--version go to stdout, usage errors to stderr; a
            // closed stream is not worth a panic.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let name = if typed_monitor {
        "monitor"
    } else {
        cli.command.name()
    };
    output::init_logging(name, cli.verbose, cli.quiet);
    let result = run(cli);
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                output::error_line(name, &f.message);
            }
            ExitCode::from(f.code)
        }
    };
    // The last lines (summaries, the error) are out before we leave, unless
    // stderr is stuck.
    output::flush_stderr(std::time::Duration::from_millis(500));
    code
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Backplane(a) => backplane::run(a),
        Command::Sub(a) => sub::run(a, cli.quiet),
        Command::Pub(a) => publish::run(a),
        Command::Topics(a) => topics::run(a),
        Command::RpiGateway(a) => rpi::run(a, cli.verbose > 0),
        Command::SerialGateway(a) => serial::run(a),
        Command::Launch(a) => launch::run(a),
        Command::Ls(a) => discover::run(a),
        Command::Call(a) => services::call(a),
        Command::Services(a) => services::list(a),
        Command::Devices(a) => services::device(a),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "banyan", &mut out);
            output::write_stdout(&out)
        }
        Command::Man { dir } => man(dir),
    }
}

fn man(dir: Option<std::path::PathBuf>) -> Result<()> {
    let cmd = Cli::command();
    let render = |c: clap::Command| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c)
            .render(&mut out)
            .map_err(|e| Failure::new(1, format!("cannot render the man page: {e}")))?;
        Ok(out)
    };
    let Some(dir) = dir else {
        return output::write_stdout(&render(cmd)?);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    let write = |name: &str, bytes: Vec<u8>| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))
    };
    for sub in cmd.get_subcommands() {
        let name = format!("banyan-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        write(&format!("{name}.1"), render(page)?)?;
    }
    write("banyan.1", render(cmd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn old_names_run_their_subcommand() {
        let mut a: Vec<OsString> = vec!["/usr/bin/banyan-backplane".into(), "-p".into()];
        argv0_subcommand(&mut a);
        assert_eq!(a, ["banyan", "backplane", "-p"].map(OsString::from));
        let mut a: Vec<OsString> = vec!["banyan".into(), "sub".into()];
        argv0_subcommand(&mut a);
        assert_eq!(a, ["banyan", "sub"].map(OsString::from));
    }

    #[test]
    fn one_flag_vocabulary() {
        // -b/-p/-s/-n mean the same in every client subcommand.
        for sub in ["sub", "pub", "topics", "rpi-gateway", "serial-gateway"] {
            let cmd = Cli::command();
            let c = cmd.find_subcommand(sub).expect(sub);
            for (short, long) in [
                ('b', "backplane"),
                ('p', "publisher-port"),
                ('s', "subscriber-port"),
                ('n', "name"),
            ] {
                let arg = c
                    .get_arguments()
                    .find(|a| a.get_short() == Some(short))
                    .unwrap_or_else(|| panic!("{sub}: no -{short}"));
                assert_eq!(arg.get_long(), Some(long), "{sub} -{short}");
            }
        }
    }
}
