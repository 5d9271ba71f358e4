//! Flags shared by the subcommands that connect to a backplane.

use banyan_component as component;

/// Where the backplane is: `-b/--backplane`, `-p`, `-s` and the name shown
/// in banners and logs, `-n/--name`.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Backplane host: IP address or name. Python Banyan's backplane listens
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
    /// A component config for this backplane, named `name`.
    pub fn config(&self, name: &str) -> component::Config {
        let mut c = component::Config::new(
            self.backplane.clone(),
            self.publisher_port,
            self.subscriber_port,
        );
        c.name = name.to_owned();
        c
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
