//! `cmd` (in progress).
