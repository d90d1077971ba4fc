//! The local stack agrees with the one topology (`keel_topology`): a service added there must be
//! configured in every region. `make up` starts what keel-localstack's `Layout` derives from the
//! topology and this configuration (its own test checks every service is laid out in every region,
//! each on a port of its own). No stack is started; these read the files the local stack runs from.

use std::collections::BTreeSet;

use keel_routing::App;
use keel_system_tests::{repo_root, service_names};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_region_of_the_local_configuration_has_the_topologys_services_and_applications() {
    let config: toml::Value = read("deploy/local/config/keel.toml").parse().unwrap();
    let regions = config["regions"].as_table().expect("[regions]");
    assert!(regions.len() >= 2, "two regions at least");
    let services: BTreeSet<&str> = service_names().collect();
    let apps: BTreeSet<&str> = App::ALL.iter().map(|app| app.name()).collect();
    for (region, table) in regions {
        for (field, expected) in [("services", &services), ("databases", &apps)] {
            let configured: BTreeSet<&str> = table[field]
                .as_table()
                .unwrap_or_else(|| panic!("regions.{region}.{field}"))
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(&configured, expected, "regions.{region}.{field}");
        }
    }
}
