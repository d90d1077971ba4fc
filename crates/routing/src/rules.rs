//! Safety rules: what no change of routing controls may leave behind. The ARC endpoint refuses an
//! update whose resulting state breaks one (unless the caller overrides that rule by name).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{control_name, App, Gate};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyRule {
    pub name: String,
    #[serde(flatten)]
    pub kind: RuleKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// At most one of these controls is On: one application never processes in two regions.
    AtMostOneOn { controls: Vec<String> },
    /// `control` may be On only while `requires` is On: a region takes traffic only where it also
    /// processes, so nothing accepted waits on a fenced relay.
    RequiresOn { control: String, requires: String },
}

impl SafetyRule {
    /// Whether `states` keeps this rule. A missing control counts as Off.
    pub fn holds(&self, states: &BTreeMap<String, bool>) -> bool {
        let on = |name: &String| states.get(name).copied().unwrap_or(false);
        match &self.kind {
            RuleKind::AtMostOneOn { controls } => controls.iter().filter(|c| on(c)).count() <= 1,
            RuleKind::RequiresOn { control, requires } => !on(control) || on(requires),
        }
    }

    /// A sentence naming what the rule protects, for the error an update that breaks it gets.
    pub fn describe(&self) -> String {
        match &self.kind {
            RuleKind::AtMostOneOn { controls } => {
                format!("at most one of {} may be On", controls.join(", "))
            }
            RuleKind::RequiresOn { control, requires } => {
                format!("{control} may be On only while {requires} is On")
            }
        }
    }
}

/// The rules of a deployment over `regions`: per application, at most one region processing and at
/// most one taking traffic, and in each region traffic only with processing.
pub fn standard_rules(regions: &[String]) -> Vec<SafetyRule> {
    let mut rules = Vec::new();
    for app in App::ALL {
        for gate in [Gate::Processing, Gate::Traffic] {
            rules.push(SafetyRule {
                name: format!("{}-{}-in-one-region", app.name(), gate.name()),
                kind: RuleKind::AtMostOneOn {
                    controls: regions
                        .iter()
                        .map(|region| control_name(app, gate, region))
                        .collect(),
                },
            });
        }
        for region in regions {
            rules.push(SafetyRule {
                name: format!("{}-{region}-traffic-needs-processing", app.name()),
                kind: RuleKind::RequiresOn {
                    control: control_name(app, Gate::Traffic, region),
                    requires: control_name(app, Gate::Processing, region),
                },
            });
        }
    }
    rules
}

/// The rules `states` breaks, in the order given.
pub fn violations<'a>(
    rules: &'a [SafetyRule],
    states: &BTreeMap<String, bool>,
) -> Vec<&'a SafetyRule> {
    rules.iter().filter(|rule| !rule.holds(states)).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{standard_controls, ControlStates};

    fn regions() -> Vec<String> {
        ["us-east-1", "us-west-2", "eu-west-1"]
            .map(str::to_owned)
            .to_vec()
    }

    #[test]
    fn two_regions_processing_breaks_the_one_region_rule() {
        let rules = standard_rules(&regions());
        let states = BTreeMap::from([
            (
                control_name(App::TradeMatching, Gate::Processing, "us-east-1"),
                true,
            ),
            (
                control_name(App::TradeMatching, Gate::Processing, "us-west-2"),
                true,
            ),
        ]);
        let broken: Vec<_> = violations(&rules, &states)
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(broken, ["trade-matching-processing-in-one-region"]);
    }

    #[test]
    fn traffic_without_processing_is_refused() {
        let rules = standard_rules(&regions());
        let states = BTreeMap::from([(
            control_name(App::Settlement, Gate::Traffic, "us-west-2"),
            true,
        )]);
        let broken: Vec<_> = violations(&rules, &states)
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(broken, ["settlement-us-west-2-traffic-needs-processing"]);
    }

    proptest! {
        /// Whatever the controls say, a state the rules accept never has one application active in
        /// two regions, and every region taking traffic also processes.
        #[test]
        fn accepted_states_have_one_active_region(bits in proptest::collection::vec(any::<bool>(), 13)) {
            let regions = regions();
            let states: BTreeMap<String, bool> = standard_controls(&regions)
                .into_iter()
                .zip(bits)
                .map(|((_, name), on)| (name, on))
                .collect();
            let view = ControlStates { states: states.clone() };
            let accepted = violations(&standard_rules(&regions), &states).is_empty();
            for app in App::ALL {
                for gate in Gate::ALL {
                    let on = regions.iter().filter(|r| view.allows(app, gate, r)).count();
                    if accepted {
                        prop_assert!(on <= 1);
                    }
                }
                for region in &regions {
                    if accepted && view.allows(app, Gate::Traffic, region) {
                        prop_assert!(view.allows(app, Gate::Processing, region));
                    }
                }
            }
        }
    }
}
