//! Generates trade blocks and submits them through Keel's HTTP API, as participants would. Used by
//! the `keel-generator` binary, the system tests and the benchmarks.
// Rates, mixes and latency percentiles are measurements, not money: floats are the right type.
#![allow(clippy::float_arithmetic)]

mod client;
mod driver;
mod trades;

pub use client::{Client, Credentials};
pub use driver::{percentile, run, Acknowledged, DriverOptions, Report};
pub use trades::{LegKind, Mix, PlannedTrade, TradeFactory};
