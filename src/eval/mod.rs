//! Evaluation: ranking metrics now; per-id DCASE reports and plots come with `mpdr eval`.

pub mod calibrate;
pub mod metrics;
pub mod plot;
