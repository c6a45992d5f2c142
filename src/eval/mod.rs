//! Evaluation: ranking metrics (AUC, pAUC), threshold calibration, plots and the report files
//! of `mpdr eval`.

pub mod calibrate;
pub mod metrics;
pub mod plot;
pub mod report;
