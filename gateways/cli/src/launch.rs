//! `banyan launch` (in progress).

use crate::output::{Failure, Result};

/// Flags of `banyan launch`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The robot file.
    pub file: std::path::PathBuf,
}

/// Runs the robot.
///
/// # Errors
/// Always, for now.
pub fn run(_args: Args) -> Result<()> {
    Err(Failure::new(1, "launch: not built yet"))
}
