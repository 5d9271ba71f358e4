//! `msg` (in progress).
