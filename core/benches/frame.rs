//! Benchmarks of `frame` (in progress).
fn main() {}
