//! `link` (in progress).
