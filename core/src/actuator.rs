//! `actuator` (in progress).
