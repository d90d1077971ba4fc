//! The plumbing every Keel service shares, so that each service's `main` reads the same way:
//! load [`config`], start [`telemetry`], build the service, serve [`ops`] endpoints, and run until
//! [`shutdown`].

pub mod config;
pub mod ops;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
