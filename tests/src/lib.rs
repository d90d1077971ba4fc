//! Starts a real Keel stack for a test: the trade-matching and settlement applications in one or
//! more regions, each region with its own nisshi broker and every service as child processes on free
//! loopback ports, plus the local ARC cluster (one or more `keel-arc-endpoint` processes sharing a
//! state file). Databases are either databases in the test Postgres cluster (`KEEL_TEST_PG`, started
//! by `make test`) shared by every region, or, with [`StackOptions::replicated`], per application a
//! Postgres primary in its active region and a streaming standby in the other, in clusters of the
//! stack's own. Every process is stopped when the [`Stack`] is dropped.
//!
//! Modules: [`options`] what a test chooses, [`stack`] starting and stopping the processes,
//! [`config`] the configuration they read, [`queries`] reading the stores, [`keelctl`] the
//! operator's command line, [`console`] the operators' console, [`fixtures`] what tests submit, [`assertions`] the invariants,
//! [`machine`] ports, binaries and pids.

pub mod assertions;
pub mod chaos;
pub mod config;
pub mod console;
pub mod fixtures;
pub mod keelctl;
pub mod load;
pub mod machine;
pub mod network;
pub mod options;
pub mod queries;
pub mod stack;

pub use keel_arc::ArcClient;
pub use keel_generator::Client;
pub use keel_routing::{control_name, App, Gate};
pub use rand;

pub use assertions::assert_exactly_once;
pub use fixtures::{
    days_from_today, participants, sample_block, seed, settling_block, stream_matching_pairs,
    stream_pairs, submit_one_until_accepted, submit_until_accepted,
};
pub use machine::{bin_dir, free_port, register_child, repo_root};
pub use options::{service_names, StackOptions, EAST, WEST};
pub use queries::{connect, count_in, published_sql, unpublished_sql, wait_replayed};
pub use stack::{Cluster, Region, Stack};
