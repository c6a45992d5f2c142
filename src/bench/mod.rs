//! Benchmarks of the paper on tabular vectors (ADBench, Table 6), run through the same
//! `nn`, `mpdr`, `model` and `eval` code as the daemon. (MNIST hold-out digits: issue 8, to do.)

pub mod vectors;
