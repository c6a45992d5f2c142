//! mpdr — acoustic anomaly detection for industrial machines.
//!
//! One library behind every front door (`mpdr features`, and later train / eval / monitor /
//! bench): audio in ([`audio`]), DCASE log-mel features ([`features`]), dataset readers
//! ([`data`]), metrics ([`eval`]), configuration ([`config`]) and tch devices ([`device`]).

pub mod admission;
pub mod alarm;
pub mod audio;
pub mod backtest;
pub mod bench;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod data;
pub mod demo;
pub mod detect;
pub mod device;
pub mod error;
pub mod eval;
pub mod features;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod model;
pub mod mpdr;
pub mod nn;
pub mod npy;
pub mod offline;
pub mod plant;
pub mod progress;
