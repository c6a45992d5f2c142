//! Benchmarks of the paper through the same `nn`, `mpdr`, `model` and `eval` code as the
//! daemon: tabular vectors (ADBench, Table 6) and MNIST hold-out digits (Tables 1–2).

pub mod mnist;
pub mod vectors;
