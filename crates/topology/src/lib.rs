//! Keel's topology, declared once (DESIGN section 3): which service consumes and produces which
//! topic, in which schema of which application's database. The services' stages, reconciliation's
//! hops, `keelctl` and the test kit all read it from here.
//!
//! - [`topics`]: the fixed topic names.
//! - [`Service`] and [`SERVICES`]: every service, in start order.
//! - [`Hop`] and [`hops`]: each topic from its one producer's outbox to its one consumer's inbox,
//!   derived from the services, in the order a message flows.

mod hops;
mod services;
pub mod topics;

pub use hops::{hops, hops_of, Hop, Side, FLOW};
pub use keel_routing::App;
pub use services::{
    service, services_of, Kind, Service, INGESTION, INGRESS, MATCHING, NOTIFICATION, SERVICES,
    SETTLEMENT,
};
