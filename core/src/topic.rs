//! `topic` (in progress).
