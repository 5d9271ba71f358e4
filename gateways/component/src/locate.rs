//! Which backplane to connect to: what `-b`, `--backplane-name` and
//! `$BANYAN_BACKPLANE` say, resolved — through the discovery pool
//! (docs/discovery.md) when needed — to an address and two ports.
//!
//! Every banyan-rs component and gateway uses this one implementation (the
//! `banyan` command's `-b` included), so they all read `-b` alike:
//!
//! | given | meaning | wait |
//! |---|---|---|
//! | `-b 192.168.1.5`, `-b ::1`, `-b robot.local`, `-b localhost` (an IP address, or anything with a dot or a colon) | an address, used as given, exactly as Python Banyan's `-b` | none |
//! | `-b lab` (one word) | the backplane named `lab` in the pool; if none is, the host name `lab` (Python Banyan's meaning) | up to [`WINDOW`] (200 ms), longer only if `lab` is not a host name either |
//! | `--backplane-name lab` | only the backplane named `lab` in the pool | until it answers, at most [`Options::name_timeout`] |
//! | nothing (and no `$BANYAN_BACKPLANE`) | the only backplane in the pool; with several, an error listing them; with none, `127.0.0.1` as before | [`WINDOW`] (200 ms) |
//!
//! A backplane found in the pool brings its own ports (they override `-p`
//! and `-s`). With nothing given, `-p`/`-s` given explicitly
//! ([`Options::publisher_port`]) narrow the choice to backplanes with those
//! ports. A backplane that does not announce itself (bound to 127.0.0.1,
//! `--no-discovery`, Python Banyan's) is not in the pool: give its address.
//!
//! Without the `discovery` feature (default on) a one-word `-b` is a host
//! name, nothing given is `127.0.0.1`, and `--backplane-name` is an error.
//!
//! ```no_run
//! use banyan_component::locate::{Options, Spec};
//! use banyan_component::{Component, Config};
//!
//! // From a `-b` flag and a `--backplane-name` flag (both optional).
//! let spec = Spec::from_args(Some("lab"), None)?;
//! let mut config = Config::default();
//! let found = config.locate(&spec, &Options::default())?;
//! println!("{found}");
//! let component = Component::connect(config)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The environment variable read when neither `-b` nor a backplane name is
/// given: the same as a `-b` value.
pub const ENV: &str = "BANYAN_BACKPLANE";

/// The address used when nothing is given and the pool has no backplane.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1";

/// How long the pool is asked before deciding "the only backplane" (and
/// whether a one-word `-b` is a backplane name): two query rounds at 0 and
/// 100 ms, each answered within 50 ms plus latency; over three times the
/// measured p99 time to first discovery (57 ms). See
/// `banyan_discovery::announce::WINDOW`.
pub const WINDOW: Duration = Duration::from_millis(200);

/// How long a backplane name is looked for by default
/// ([`Options::name_timeout`]).
pub const NAME_TIMEOUT: Duration = Duration::from_secs(2);

/// Which backplane: what the flags say, before looking anything up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// An address (IP address or a host name with a dot, `localhost`),
    /// used as given.
    Address(String),
    /// One word from `-b`: the backplane of that name in the pool, else the
    /// host of that name.
    NameOrHost(String),
    /// A backplane name (`--backplane-name`): only the pool.
    Name(String),
    /// Nothing given: the only backplane in the pool, else this host.
    Any,
}

impl Spec {
    /// Reads one `-b` value: an IP address, `localhost`, or anything with a
    /// dot or a colon is an [`Spec::Address`]; any other word is
    /// [`Spec::NameOrHost`]; empty is [`Spec::Any`].
    pub fn parse(arg: &str) -> Spec {
        let arg = arg.trim();
        if arg.is_empty() {
            Spec::Any
        } else if arg.parse::<IpAddr>().is_ok()
            || arg.eq_ignore_ascii_case("localhost")
            || arg.contains('.')
            || arg.contains(':')
        {
            Spec::Address(arg.to_owned())
        } else {
            Spec::NameOrHost(arg.to_owned())
        }
    }

    /// From the values of `-b` and `--backplane-name`; with neither, from
    /// `$BANYAN_BACKPLANE` (read like `-b`), else [`Spec::Any`].
    ///
    /// # Errors
    /// [`Error::Conflict`] when both are given.
    pub fn from_args(backplane: Option<&str>, name: Option<&str>) -> Result<Spec, Error> {
        match (backplane, name) {
            (Some(b), Some(n)) => Err(Error::Conflict {
                backplane: b.to_owned(),
                name: n.to_owned(),
            }),
            (Some(b), None) => Ok(Spec::parse(b)),
            (None, Some(n)) => Ok(Spec::Name(n.to_owned())),
            (None, None) => Ok(std::env::var(ENV)
                .map(|v| Spec::parse(&v))
                .unwrap_or(Spec::Any)),
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Address(a) => write!(f, "address {a}"),
            Spec::NameOrHost(w) => write!(f, "{w:?}"),
            Spec::Name(n) => write!(f, "backplane name {n:?}"),
            Spec::Any => f.write_str("the only backplane in the pool"),
        }
    }
}

/// How to look. `#[non_exhaustive]`: start from [`Options::default`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The publisher port given explicitly (`-p`), if any. Used for an
    /// address; with nothing given, only backplanes announcing this port
    /// are candidates. Default: none (43124 for an address).
    pub publisher_port: Option<u16>,
    /// The subscriber port given explicitly (`-s`), likewise (43125).
    pub subscriber_port: Option<u16>,
    /// How long the pool is asked for "the only backplane". Default
    /// [`WINDOW`].
    pub any_wait: Duration,
    /// How long a backplane name is looked for. Default [`NAME_TIMEOUT`].
    pub name_timeout: Duration,
    /// The pool settings; `None` (default): from the environment
    /// (`BANYAN_DISCOVERY_CHANNEL`, `_SEEDS`, `_INTERFACES`).
    #[cfg(feature = "discovery")]
    pub discovery: Option<banyan_discovery::driver::Config>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            publisher_port: None,
            subscriber_port: None,
            any_wait: WINDOW,
            name_timeout: NAME_TIMEOUT,
            #[cfg(feature = "discovery")]
            discovery: None,
        }
    }
}

impl Options {
    /// Defaults with the ports given explicitly (`None`: not given).
    pub fn with_ports(publisher_port: Option<u16>, subscriber_port: Option<u16>) -> Options {
        Options {
            publisher_port,
            subscriber_port,
            ..Options::default()
        }
    }

    fn ports(&self) -> (u16, u16) {
        (
            self.publisher_port.unwrap_or(PUBLISHER_PORT),
            self.subscriber_port.unwrap_or(SUBSCRIBER_PORT),
        )
    }
}

const PUBLISHER_PORT: u16 = 43124;
const SUBSCRIBER_PORT: u16 = 43125;

/// A backplane found in the discovery pool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Announced {
    /// Its name.
    pub name: String,
    /// Its instance id.
    pub id: u64,
    /// The interface it was heard on, if known.
    pub interface: Option<String>,
}

/// How the backplane was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum How {
    /// An address was given; used as is.
    Given,
    /// A one-word `-b` that no backplane in the pool is named: a host name.
    HostName,
    /// The backplane with the name given, found in the pool.
    Named(Announced),
    /// Nothing given: the only backplane in the pool.
    Only(Announced),
    /// Nothing given and no backplane in the pool: [`DEFAULT_ADDRESS`].
    Default,
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Located {
    /// IP address or host name.
    pub address: String,
    /// Its publisher port (a component's PUB connects here).
    pub publisher_port: u16,
    /// Its subscriber port (a component's SUB connects here).
    pub subscriber_port: u16,
    /// Its service broker's port, when the pool announced one (`None` for
    /// an address given: the caller's default applies).
    pub services_port: Option<u16>,
    /// How it was chosen.
    pub how: How,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!(
            "{} (publisher port {}, subscriber port {})",
            self.address, self.publisher_port, self.subscriber_port
        );
        let via = |a: &Announced| {
            a.interface
                .as_ref()
                .map(|i| format!(" via {i}"))
                .unwrap_or_default()
        };
        match &self.how {
            How::Given => write!(f, "backplane at {at}"),
            How::HostName => write!(f, "backplane at host {at}"),
            How::Named(a) => write!(f, "backplane {:?} found at {at}{}", a.name, via(a)),
            How::Only(a) => write!(
                f,
                "backplane {:?} (the only one in the discovery pool) at {at}{}",
                a.name,
                via(a)
            ),
            How::Default => write!(f, "backplane at {at} (none in the discovery pool)"),
        }
    }
}

/// Why no backplane could be chosen. Each says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Both `-b` and `--backplane-name` were given.
    #[error("give either -b {backplane} or --backplane-name {name}, not both")]
    Conflict {
        /// The `-b` value.
        backplane: String,
        /// The `--backplane-name` value.
        name: String,
    },
    /// A backplane name, but this build has no discovery.
    #[error(
        "backplane name {0:?}: this build has no discovery (feature `discovery`); \
         give the backplane's address with -b ADDR"
    )]
    NoDiscovery(String),
    /// No backplane of that name, several, or the pool could not be joined
    /// (the message lists the backplanes seen and says to use `-b NAME`
    /// or `-b ADDR`).
    #[cfg(feature = "discovery")]
    #[error(transparent)]
    Pool(#[from] banyan_discovery::announce::ResolveError),
    /// A one-word `-b` that is neither a backplane in the pool nor a host
    /// name.
    #[cfg(feature = "discovery")]
    #[error("{word:?} is not a host name ({dns}) and {pool}")]
    Unknown {
        /// The word.
        word: String,
        /// Why it did not resolve as a host name.
        dns: String,
        /// What the pool said.
        pool: banyan_discovery::announce::ResolveError,
    },
}

/// Resolves `spec` (see the [module docs](self)).
///
/// # Errors
/// See [`Error`]. With nothing given ([`Spec::Any`]) a pool that cannot be
/// joined is not an error: it falls back to [`DEFAULT_ADDRESS`] (logged).
pub fn locate(spec: &Spec, opts: &Options) -> Result<Located, Error> {
    let (publisher_port, subscriber_port) = opts.ports();
    let given = |address: &str, how: How| Located {
        address: address.to_owned(),
        publisher_port,
        subscriber_port,
        services_port: None,
        how,
    };
    match spec {
        Spec::Address(a) => Ok(given(a, How::Given)),
        #[cfg(not(feature = "discovery"))]
        Spec::NameOrHost(w) => Ok(given(w, How::HostName)),
        #[cfg(not(feature = "discovery"))]
        Spec::Name(n) => Err(Error::NoDiscovery(n.clone())),
        #[cfg(not(feature = "discovery"))]
        Spec::Any => Ok(given(DEFAULT_ADDRESS, How::Default)),
        #[cfg(feature = "discovery")]
        Spec::NameOrHost(w) => pool::name_or_host(w, opts, given),
        #[cfg(feature = "discovery")]
        Spec::Name(n) => pool::named(n, opts, opts.name_timeout),
        #[cfg(feature = "discovery")]
        Spec::Any => pool::any(opts, given),
    }
}

#[cfg(feature = "discovery")]
mod pool {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use banyan_discovery::announce::{survey_backplanes_with, Backplane, ResolveError, Survey};
    use banyan_discovery::driver;

    use super::{Announced, Error, How, Located, Options, DEFAULT_ADDRESS};

    fn config(opts: &Options) -> Result<driver::Config, driver::Error> {
        match &opts.discovery {
            Some(c) => Ok(c.clone()),
            None => driver::Config::from_env(),
        }
    }

    fn survey(opts: &Options, name: Option<&str>, timeout: Duration) -> Result<Survey, Error> {
        let cfg = config(opts).map_err(ResolveError::from)?;
        Ok(survey_backplanes_with(cfg, name, timeout).map_err(ResolveError::from)?)
    }

    fn announced(b: &Backplane) -> Announced {
        Announced {
            name: b.name.clone(),
            id: b.id,
            interface: b.interface.clone(),
        }
    }

    fn at(b: &Backplane, how: How) -> Located {
        Located {
            address: b.addr().to_string(),
            publisher_port: b.publisher.port(),
            subscriber_port: b.subscriber.port(),
            services_port: b.services.map(|s| s.port()),
            how,
        }
    }

    /// One of `found` named `name`, or the error listing what was seen.
    fn decide(name: &str, timeout: Duration, s: Survey) -> Result<Located, ResolveError> {
        let mut found = s.found;
        if found.len() > 1 {
            return Err(ResolveError::Ambiguous {
                name: Some(name.to_owned()),
                found,
            });
        }
        match found.pop() {
            Some(b) => Ok(at(&b, How::Named(announced(&b)))),
            None => Err(ResolveError::NotFound {
                name: Some(name.to_owned()),
                timeout,
                others: s.others,
            }),
        }
    }

    pub(super) fn named(name: &str, opts: &Options, timeout: Duration) -> Result<Located, Error> {
        let s = survey(opts, Some(name), timeout)?;
        Ok(decide(name, timeout, s)?)
    }

    /// A one-word `-b`: the pool for [`super::WINDOW`] while the host name
    /// resolves beside it; a backplane of that name wins; else the host
    /// name if it resolves; else the pool until the name timeout.
    pub(super) fn name_or_host(
        word: &str,
        opts: &Options,
        given: impl Fn(&str, How) -> Located,
    ) -> Result<Located, Error> {
        let (tx, rx) = mpsc::channel();
        let host = word.to_owned();
        // getaddrinfo cannot be cancelled: a detached thread reports back
        // (or not, if we have decided already).
        let _ = std::thread::Builder::new()
            .name("resolve-host".into())
            .spawn(move || {
                use std::net::ToSocketAddrs;
                let r = (host.as_str(), 0)
                    .to_socket_addrs()
                    .map(|mut a| a.next().is_some())
                    .map_err(|e| e.to_string());
                let _ = tx.send(r);
            });
        let start = Instant::now();
        let first = opts.any_wait.min(opts.name_timeout);
        let s = survey(opts, Some(word), first)?;
        if !s.found.is_empty() {
            return Ok(decide(word, first, s)?);
        }
        // The host lookup's answer: None while it is still running.
        let mut answer: Option<Result<(), String>> = None;
        let mut dns = || {
            if answer.is_none() {
                answer = match rx.try_recv() {
                    Ok(Ok(true)) => Some(Ok(())),
                    Ok(Ok(false)) => Some(Err("no address".to_owned())),
                    Ok(Err(e)) => Some(Err(e)),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        Some(Err("host lookup failed".to_owned()))
                    }
                };
            }
            answer.clone()
        };
        if let Some(Ok(())) = dns() {
            return Ok(given(word, How::HostName));
        }
        let rest = opts.name_timeout.saturating_sub(start.elapsed());
        let s = survey(opts, Some(word), rest)?;
        if !s.found.is_empty() {
            return Ok(decide(word, opts.name_timeout, s)?);
        }
        match dns() {
            Some(Ok(())) => Ok(given(word, How::HostName)),
            // Still resolving: let the transport resolve it (and retry), as
            // Python Banyan does.
            None => Ok(given(word, How::HostName)),
            Some(Err(dns)) => Err(Error::Unknown {
                word: word.to_owned(),
                dns,
                pool: ResolveError::NotFound {
                    name: Some(word.to_owned()),
                    timeout: opts.name_timeout,
                    others: s.others,
                },
            }),
        }
    }

    /// Nothing given: the only backplane (with the explicit ports, if
    /// any), several is an error, none is this host.
    pub(super) fn any(
        opts: &Options,
        given: impl Fn(&str, How) -> Located,
    ) -> Result<Located, Error> {
        let cfg = match config(opts) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("discovery settings: {e}; using the backplane at {DEFAULT_ADDRESS}");
                return Ok(given(DEFAULT_ADDRESS, How::Default));
            }
        };
        let s = match survey_backplanes_with(cfg, None, opts.any_wait) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "cannot join the discovery pool ({e}); using the backplane at {DEFAULT_ADDRESS}"
                );
                return Ok(given(DEFAULT_ADDRESS, How::Default));
            }
        };
        let mut found: Vec<Backplane> = s
            .found
            .into_iter()
            .filter(|b| {
                opts.publisher_port.is_none_or(|p| b.publisher.port() == p)
                    && opts
                        .subscriber_port
                        .is_none_or(|p| b.subscriber.port() == p)
            })
            .collect();
        if found.len() > 1 {
            return Err(ResolveError::Ambiguous { name: None, found }.into());
        }
        Ok(match found.pop() {
            Some(b) => at(&b, How::Only(announced(&b))),
            None => given(DEFAULT_ADDRESS, How::Default),
        })
    }
}

#[cfg(feature = "libzmq")]
impl crate::Config {
    /// Sets [`address`](crate::Config::address) and the ports to the
    /// backplane `spec` locates (see the [module docs](self)); the other
    /// fields stay. Logs how it was chosen (info).
    ///
    /// # Errors
    /// See [`locate`].
    pub fn locate(&mut self, spec: &Spec, opts: &Options) -> Result<Located, Error> {
        let l = locate(spec, opts)?;
        log::info!("{}: {l}", self.name);
        self.address.clone_from(&l.address);
        self.publisher_port = l.publisher_port;
        self.subscriber_port = l.subscriber_port;
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_b_value_is_an_address_or_a_word() {
        for a in [
            "192.168.1.5",
            "127.0.0.1",
            "localhost",
            "LOCALHOST",
            "robot.local",
            "::1",
            "fe80::1",
        ] {
            assert_eq!(Spec::parse(a), Spec::Address(a.into()), "{a}");
        }
        for w in ["robot-3", "bp", "lab_backplane", "raspberrypi"] {
            assert_eq!(Spec::parse(w), Spec::NameOrHost(w.into()), "{w}");
        }
        assert_eq!(Spec::parse(""), Spec::Any);
    }

    #[test]
    fn flags_and_their_conflict() {
        assert_eq!(
            Spec::from_args(Some("10.0.0.1"), None).unwrap(),
            Spec::Address("10.0.0.1".into())
        );
        assert_eq!(
            Spec::from_args(None, Some("a.b")).unwrap(),
            Spec::Name("a.b".into())
        );
        let e = Spec::from_args(Some("x"), Some("y")).unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn an_address_needs_no_lookup_and_keeps_the_ports() {
        let l = locate(
            &Spec::Address("10.1.2.3".into()),
            &Options::with_ports(Some(5000), None),
        )
        .unwrap();
        assert_eq!(
            (l.address.as_str(), l.publisher_port, l.subscriber_port),
            ("10.1.2.3", 5000, 43125)
        );
        assert_eq!(l.how, How::Given);
    }

    /// A pool of its own (a channel nobody else uses), loopback only.
    #[cfg(feature = "discovery")]
    fn empty_pool() -> Options {
        let mut cfg = banyan_discovery::driver::Config::for_channel(&format!(
            "locate-test-{}",
            std::process::id()
        ));
        cfg.interfaces = vec!["lo".into()];
        Options {
            discovery: Some(cfg),
            ..Options::default()
        }
    }

    #[cfg(feature = "discovery")]
    #[test]
    fn nothing_given_and_an_empty_pool_is_this_host() {
        let l = locate(&Spec::Any, &empty_pool()).unwrap();
        assert_eq!(l.address, DEFAULT_ADDRESS);
        assert_eq!((l.publisher_port, l.subscriber_port), (43124, 43125));
        assert_eq!(l.how, How::Default);
    }

    #[cfg(feature = "discovery")]
    #[test]
    fn a_word_that_is_a_host_name_is_an_address() {
        // (`localhost` parses as an address; here it stands for any word
        // that resolves.)
        let l = locate(&Spec::NameOrHost("localhost".into()), &empty_pool()).unwrap();
        assert_eq!(l.how, How::HostName);
        assert_eq!(l.address, "localhost");
    }

    #[cfg(feature = "discovery")]
    #[test]
    fn one_window_for_both_crates() {
        assert_eq!(WINDOW, banyan_discovery::announce::WINDOW);
    }

    #[cfg(feature = "discovery")]
    #[test]
    fn a_name_nobody_has_is_an_error_that_says_what_to_do() {
        let mut o = empty_pool();
        o.name_timeout = Duration::from_secs(1);
        let e = locate(&Spec::Name("nobody-here".into()), &o).unwrap_err();
        let t = e.to_string();
        assert!(t.contains("nobody-here") && t.contains("-b ADDR"), "{t}");
        let e = locate(&Spec::NameOrHost("nobody-here-either".into()), &o).unwrap_err();
        let t = e.to_string();
        assert!(
            t.contains("is not a host name") && t.contains("-b ADDR"),
            "{t}"
        );
    }
}
