//! Heartbeats of one connection: the sans-IO clocks of
//! [`banyan_zmtp::liveness`], shared with the services broker.

pub(crate) use banyan_zmtp::liveness::{earliest, Due, Expiry, Liveness, Settings};
