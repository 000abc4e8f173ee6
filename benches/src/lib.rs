//! Criterion benchmarks for ssl-rs (`cargo bench -p ssl-benches`). Bench
//! names carry the device: `cpu/ntxent/512x128`. Side-by-side ratios
//! against the PyTorch ecosystem come with the benchmarks issue.
