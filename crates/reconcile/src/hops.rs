//! The hops reconciliation compares, derived from the one topology.
pub use keel_topology::{hops, hops_of, Hop, Side};
