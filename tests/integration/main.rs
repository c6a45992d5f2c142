//! One integration-test binary: real files, the real `mpdr` binary, real libtorch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test or benchmark: failing loudly is the point

mod alarm_mgmt;
mod backtest;
mod bench;
mod bundle;
mod cli_features;
mod config_property;
mod console;
mod delivery;
mod demo;
mod dev_data;
mod edge;
mod fleet;
mod fuzz_regressions;
mod golden;
mod hangs;
mod hardening;
mod install;
mod lockouts;
mod monitor;
mod mpdr_parity;
mod mpdr_switches;
mod ops_files;
mod profiles;
mod recipe;
mod signal_faults;
mod tch_link;
mod train_eval;
mod util;
mod windows;
