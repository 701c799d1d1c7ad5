//! FieldSync's cross-crate test support: the seeded team generator (used by the
//! benchmarks, the demo and tests) and the benchmark harness (`bench` binary). The
//! end-to-end tests live in `e2e/`.

pub mod bench;
pub mod generator;
