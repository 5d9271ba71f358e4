//! `frame` (in progress).
