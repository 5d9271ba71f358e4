//! The `banyan` command (see the `banyan_cli` crate and `docs/cli.md`).

fn main() -> std::process::ExitCode {
    banyan_cli::main()
}
