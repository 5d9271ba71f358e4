//! Flags shared by the subcommands that connect to a backplane.

use banyan_component as component;

/// Which backplane: `-b/--backplane` or `--backplane-name` (shared by every
/// subcommand that talks to a backplane or its service broker). Resolved by
/// [`banyan_component::locate`] (one implementation for every component;
/// docs/discovery.md).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Which {
    /// Backplane: an IP address or host name (as in Python Banyan), or the
    /// name of a backplane in the discovery pool (a one-word value is
    /// looked up there first). Default: the only backplane in the pool,
    /// else 127.0.0.1. Python Banyan's backplane listens only on its LAN
    /// address, not 127.0.0.1: give that address then.
    #[arg(
        short = 'b',
        long = "backplane",
        env = "BANYAN_BACKPLANE",
        value_name = "HOST|NAME"
    )]
    pub backplane: Option<String>,
    /// The name of a backplane in the discovery pool (only the pool is
    /// asked, even for a name with a dot).
    #[arg(
        long = "backplane-name",
        value_name = "NAME",
        conflicts_with = "backplane"
    )]
    pub backplane_name: Option<String>,
}

impl Which {
    /// Finds the backplane (see [`banyan_component::locate`]) with the
    /// ports given as `opts`.
    ///
    /// # Errors
    /// Both `-b` and `--backplane-name`; a name that no backplane in the
    /// pool answers to; several backplanes and no `-b` (the errors list the
    /// backplanes seen).
    pub fn locate(
        &self,
        opts: &component::locate::Options,
    ) -> crate::output::Result<component::locate::Located> {
        let spec = self.spec()?;
        component::locate::locate(&spec, opts)
            .map_err(|e| crate::output::Failure::new(1, format!("backplane: {e}")))
    }

    fn spec(&self) -> crate::output::Result<component::locate::Spec> {
        component::locate::Spec::from_args(
            self.backplane.as_deref(),
            self.backplane_name.as_deref(),
        )
        .map_err(|e| crate::output::Failure::usage(e.to_string()))
    }
}

/// Where the backplane is: [`Which`] one, `-p`, `-s`.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Which backplane.
    #[command(flatten)]
    pub which: Which,
    /// The backplane's publisher port (components publish here). Default
    /// 43124, or what the backplane found in the pool announces.
    #[arg(short = 'p', long = "publisher-port", value_name = "PORT")]
    pub publisher_port: Option<u16>,
    /// The backplane's subscriber port (components subscribe here).
    /// Default 43125, or what the backplane found in the pool announces.
    #[arg(short = 's', long = "subscriber-port", value_name = "PORT")]
    pub subscriber_port: Option<u16>,
}

impl Connect {
    /// A component config for this backplane, named `name` (see
    /// [`banyan_component::locate`]: an address is used as given, a name
    /// is looked up in the discovery pool, nothing given takes the only
    /// backplane there or 127.0.0.1).
    ///
    /// # Errors
    /// As [`Which::locate`].
    pub fn config(&self, name: &str) -> crate::output::Result<component::Config> {
        use component::locate::Options;
        let spec = self.which.spec()?;
        let mut c = component::Config::default();
        c.name = name.to_owned();
        c.locate(
            &spec,
            &Options::with_ports(self.publisher_port, self.subscriber_port),
        )
        .map_err(|e| crate::output::Failure::new(1, format!("backplane: {e}")))?;
        Ok(c)
    }
}

/// A component error as a failure of the subcommand.
pub fn component_error(e: component::Error) -> crate::Failure {
    crate::Failure::new(1, e.to_string())
}

/// One line naming the backplane a component uses (instead of Python
/// Banyan's star banner).
pub fn banner_line(c: &component::Config) -> String {
    format!(
        "{}: backplane {} (publisher port {}, subscriber port {})",
        c.name, c.address, c.publisher_port, c.subscriber_port
    )
}
