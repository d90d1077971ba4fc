//! Who may process where (DESIGN section 5), with no IO.
//!
//! - [`App`]: the two applications, and which one receives a topic.
//! - [`control_name`]: the routing controls, per application and region a `traffic` and a
//!   `processing` control, plus the global [`GENERATOR`] control.
//! - [`SafetyRule`]: the rules every change of controls must keep; [`violations`] checks a state.
//! - [`ControlStates`]: one reading of every control, and what it means for a service.

mod rules;

pub use rules::{standard_rules, violations, RuleKind, SafetyRule};

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An application: rotated between regions as a whole, independently of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum App {
    TradeMatching,
    Settlement,
}

impl App {
    pub const ALL: [App; 2] = [App::TradeMatching, App::Settlement];

    pub fn name(self) -> &'static str {
        match self {
            App::TradeMatching => "trade-matching",
            App::Settlement => "settlement",
        }
    }

    pub fn from_name(name: &str) -> Option<App> {
        App::ALL.into_iter().find(|app| app.name() == name)
    }

    /// The application that consumes `topic`. Topics are named after their receiving application
    /// (`tm.` for trade matching, `st.` for settlement), which is what makes `st.instructions` and
    /// `tm.settlement-results` the two inter-application topics.
    pub fn receiving(topic: &str) -> Option<App> {
        match topic.split_once('.') {
            Some(("tm", _)) => Some(App::TradeMatching),
            Some(("st", _)) => Some(App::Settlement),
            _ => None,
        }
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a routing control gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// Ingress accepts submissions.
    Traffic,
    /// Consumers and outbox relays run.
    Processing,
}

impl Gate {
    pub const ALL: [Gate; 2] = [Gate::Traffic, Gate::Processing];

    pub fn name(self) -> &'static str {
        match self {
            Gate::Traffic => "traffic",
            Gate::Processing => "processing",
        }
    }
}

/// The one global control: whether the trade generator runs.
pub const GENERATOR: &str = "generator";

/// The routing control of `app`'s `gate` in `region`, such as `trade-matching-us-east-1-processing`.
pub fn control_name(app: App, gate: Gate, region: &str) -> String {
    format!("{}-{region}-{}", app.name(), gate.name())
}

/// Every routing control of a deployment over `regions`, each with the control panel it belongs to
/// (one per application, plus `keel` for the generator).
pub fn standard_controls(regions: &[String]) -> Vec<(String, String)> {
    let mut controls = Vec::new();
    for app in App::ALL {
        for region in regions {
            for gate in Gate::ALL {
                controls.push((app.name().to_owned(), control_name(app, gate, region)));
            }
        }
    }
    controls.push(("keel".to_owned(), GENERATOR.to_owned()));
    controls
}

/// The controls that are On when each application is active in the given region (and the generator
/// runs): the state a fresh deployment starts in.
pub fn initial_states(
    regions: &[String],
    active: &BTreeMap<App, String>,
) -> BTreeMap<String, bool> {
    standard_controls(regions)
        .into_iter()
        .map(|(_, name)| {
            let on = name == GENERATOR
                || App::ALL.into_iter().any(|app| {
                    active.get(&app).is_some_and(|region| {
                        Gate::ALL
                            .into_iter()
                            .any(|gate| control_name(app, gate, region) == name)
                    })
                });
            (name, on)
        })
        .collect()
}

/// One reading of every routing control.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStates {
    pub states: BTreeMap<String, bool>,
}

impl ControlStates {
    pub fn is_on(&self, control: &str) -> bool {
        self.states.get(control).copied().unwrap_or(false)
    }

    /// Whether `app`'s `gate` is On in `region`. A control that does not exist is Off: a service
    /// never runs on a control nobody can turn off.
    pub fn allows(&self, app: App, gate: Gate, region: &str) -> bool {
        self.is_on(&control_name(app, gate, region))
    }

    /// The region whose `gate` is On for `app`, if exactly one is. None means the application is
    /// between regions (or, against the safety rules, in two).
    pub fn active_region<'a>(
        &self,
        app: App,
        gate: Gate,
        regions: &'a [String],
    ) -> Option<&'a str> {
        let mut on = regions
            .iter()
            .filter(|region| self.allows(app, gate, region));
        match (on.next(), on.next()) {
            (Some(region), None) => Some(region),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<String> {
        vec!["us-east-1".to_owned(), "us-west-2".to_owned()]
    }

    #[test]
    fn topics_belong_to_the_application_that_consumes_them() {
        assert_eq!(App::receiving("st.instructions"), Some(App::Settlement));
        assert_eq!(
            App::receiving("tm.settlement-results"),
            Some(App::TradeMatching)
        );
        assert_eq!(App::receiving("tm.submissions"), Some(App::TradeMatching));
        assert_eq!(App::receiving("orders"), None);
    }

    #[test]
    fn a_fresh_deployment_is_active_where_configured() {
        let active = BTreeMap::from([
            (App::TradeMatching, "us-east-1".to_owned()),
            (App::Settlement, "us-west-2".to_owned()),
        ]);
        let states = ControlStates {
            states: initial_states(&regions(), &active),
        };
        assert_eq!(states.states.len(), 9);
        let regions = regions();
        assert_eq!(
            states.active_region(App::TradeMatching, Gate::Processing, &regions),
            Some("us-east-1")
        );
        assert_eq!(
            states.active_region(App::Settlement, Gate::Traffic, &regions),
            Some("us-west-2")
        );
        assert!(!states.allows(App::Settlement, Gate::Processing, "us-east-1"));
        assert!(states.is_on(GENERATOR));
        assert!(violations(&standard_rules(&regions), &states.states).is_empty());
    }

    #[test]
    fn two_regions_on_is_no_active_region() {
        let mut states = ControlStates::default();
        for region in regions() {
            states.states.insert(
                control_name(App::Settlement, Gate::Processing, &region),
                true,
            );
        }
        assert_eq!(
            states.active_region(App::Settlement, Gate::Processing, &regions()),
            None
        );
    }
}

/// Where one region's parts are: its Kafka cluster, its ingress, each application's database there
/// (the primary where the application is active, the standby elsewhere) and each service's ops
/// endpoint. Every service and keelctl read the same map (`[regions.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionConfig {
    /// `host:port[,host:port…]` of the region's Kafka cluster.
    pub kafka: String,
    /// The region's ingress base URL, handed to clients by a region that is not active.
    pub ingress_url: String,
    /// Database URL per application name.
    pub databases: BTreeMap<String, String>,
    /// `/healthz /readyz /metrics` base URL per service name.
    pub services: BTreeMap<String, String>,
}
