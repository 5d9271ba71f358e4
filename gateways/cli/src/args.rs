//! Flags shared by the subcommands that connect to a backplane.

use banyan_component as component;

/// Where the backplane is: `-b/--backplane`, `-p`, `-s` and the name shown
/// in banners and logs, `-n/--name`.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Backplane: an IP address or host name, or the name of a backplane in
    /// the discovery pool. Python Banyan's backplane listens
    /// only on its LAN address, not 127.0.0.1: give that address then.
    #[arg(
        short = 'b',
        long = "backplane",
        env = "BANYAN_BACKPLANE",
        value_name = "HOST",
        default_value = "127.0.0.1"
    )]
    pub backplane: String,
    /// The backplane's publisher port (components publish here).
    #[arg(short = 'p', long = "publisher-port", value_name = "PORT",
          default_value_t = component::PUBLISHER_PORT)]
    pub publisher_port: u16,
    /// The backplane's subscriber port (components subscribe here).
    #[arg(short = 's', long = "subscriber-port", value_name = "PORT",
          default_value_t = component::SUBSCRIBER_PORT)]
    pub subscriber_port: u16,
}

impl Connect {
    /// A component config for this backplane, named `name`. `-b` is an
    /// address (IP, `localhost`, a host name with a dot) used as given, as
    /// in Python Banyan, or a backplane *name* looked up in the discovery
    /// pool (docs/discovery.md), whose ports then override `-p`/`-s`.
    ///
    /// # Errors
    /// A name that no backplane in the pool answers to (the error lists the
    /// backplanes seen).
    pub fn config(&self, name: &str) -> crate::output::Result<component::Config> {
        use banyan_discovery::announce::{classify_backplane_arg, resolve_backplane, BackplaneArg};
        let (host, publisher_port, subscriber_port) = match classify_backplane_arg(&self.backplane)
        {
            BackplaneArg::Address(a) => (a, self.publisher_port, self.subscriber_port),
            BackplaneArg::Name(n) => {
                let bp = resolve_backplane(Some(&n), std::time::Duration::from_secs(2))
                    .map_err(|e| crate::output::Failure::new(1, format!("backplane {n:?}: {e}")))?;
                log::info!(target: "banyan", "backplane {n:?} found at {}", bp.addr());
                (
                    bp.addr().to_string(),
                    bp.publisher.port(),
                    bp.subscriber.port(),
                )
            }
        };
        let mut c = component::Config::new(host, publisher_port, subscriber_port);
        c.name = name.to_owned();
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
