//! The names the Terraform takes from `deploy/terraform/keel-names.json` are the ones the code
//! uses: the file is what the code says now, and its patterns give what keel-routing gives.

use std::path::PathBuf;

use keel_operations_live::deployment::{self, expand};
use keel_routing::{standard_controls, standard_rules, App, Gate, GENERATOR};

fn names_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/terraform/keel-names.json")
}

#[test]
fn the_checked_in_names_are_what_the_code_says() {
    let now = serde_json::to_string_pretty(&deployment::names()).unwrap() + "\n";
    let path = names_file();
    if std::env::var("KEEL_BLESS").is_ok_and(|v| !v.is_empty()) {
        // Whole or not at all: the other tests read it meanwhile.
        let written = path.with_extension("json.new");
        std::fs::write(&written, &now).unwrap();
        std::fs::rename(&written, &path).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == now,
        "{} differs from what the code names; rewrite it with KEEL_BLESS=1 cargo test -p keel-operations-live --test deployment_names, and apply the Terraform",
        path.display()
    );
}

fn regions(names: &[&str]) -> Vec<String> {
    names.iter().map(|r| r.to_string()).collect()
}

#[test]
fn the_patterns_give_keel_routings_controls_and_rules_for_any_regions() {
    let names = deployment::names();
    for regions in [
        regions(&["us-east-1", "us-west-2"]),
        regions(&["us-east-1", "us-west-2", "eu-west-1"]),
    ] {
        // As the Terraform expands them: per application, region and gate.
        let mut expanded = Vec::new();
        for app in &names.applications {
            for region in &regions {
                for gate in &names.routing.gates {
                    let control = expand(
                        names.routing.control,
                        &[
                            ("application", app.name),
                            ("region", region),
                            ("gate", gate),
                        ],
                    );
                    expanded.push((app.control_panel.to_owned(), control));
                }
            }
        }
        expanded.push((
            names.routing.generator_control_panel.to_owned(),
            names.routing.generator_control.to_owned(),
        ));
        expanded.sort();
        let mut controls = standard_controls(&regions);
        controls.sort();
        assert_eq!(expanded, controls, "controls over {regions:?}");

        let mut rules = Vec::new();
        for app in &names.applications {
            for gate in &names.routing.gates {
                rules.push(expand(
                    names.routing.one_region_rule,
                    &[("application", app.name), ("gate", gate)],
                ));
            }
            for region in &regions {
                rules.push(expand(
                    names.routing.traffic_needs_processing_rule,
                    &[("application", app.name), ("region", region)],
                ));
            }
        }
        rules.sort();
        let mut expected: Vec<String> = standard_rules(&regions)
            .into_iter()
            .map(|rule| rule.name)
            .collect();
        expected.sort();
        assert_eq!(rules, expected, "rules over {regions:?}");
    }
    assert_eq!(names.routing.generator_control, GENERATOR);
    assert_eq!(names.applications.len(), App::ALL.len());
    assert_eq!(names.routing.gates.len(), Gate::ALL.len());
}

#[test]
fn every_topic_a_service_touches_is_named_once() {
    let names = deployment::names();
    for service in keel_topology::SERVICES {
        for topic in service.topics() {
            assert_eq!(
                names.topics.iter().filter(|t| t.name == topic).count(),
                1,
                "{topic} of {}",
                service.name
            );
        }
    }
}

/// keelctl (and the continuous reconciler, which is keelctl) takes what it is given.
#[test]
fn keelctl_takes_every_variable_the_deployment_gives_it() {
    keel_platform::config::assert_takes_deployment_variables::<keel_operations_live::Config>(
        env!("CARGO_MANIFEST_DIR"),
        "keelctl",
    );
}

/// Every process the deployment runs is given its configuration file.
#[test]
fn every_process_is_given_its_configuration() {
    let names = deployment::names();
    let processes: Vec<&str> = keel_topology::SERVICES
        .iter()
        .map(|s| s.name)
        .chain(deployment::OPERATOR_PROCESSES)
        .collect();
    assert_eq!(
        names
            .variables_by_process
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        processes.iter().copied().collect()
    );
    for process in processes {
        assert!(
            names.variables_by_process[process].contains(&"KEEL_CONFIG"),
            "{process}"
        );
    }
}
