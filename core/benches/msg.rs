//! Benchmarks of `msg` and `cmd` (in progress).
fn main() {}
