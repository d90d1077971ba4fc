//! The cluster's state and the rules over it: routing controls in control panels, and safety rules.
//! Reads and updates go through [`SharedState`], a JSON file that several endpoint processes share
//! under a file lock, written atomically (temporary file, fsync, rename), so a change one endpoint
//! acknowledged is what every other endpoint answers from then on, across restarts.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use keel_routing::{standard_controls, standard_rules, App, SafetyRule};
use serde::{Deserialize, Serialize};

const ARN_PREFIX: &str = "arn:aws:route53-recovery-control::000000000000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingControl {
    pub arn: String,
    pub name: String,
    pub control_panel_arn: String,
    pub control_panel_name: String,
    pub on: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub controls: Vec<RoutingControl>,
    /// Each rule with its ARN.
    pub rules: Vec<(String, SafetyRule)>,
}

/// Why an update was refused; each maps to one of ARC's error types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("routing control {0} does not exist")]
    UnknownControl(String),
    #[error("update refused by safety rule {name}: {rule}")]
    SafetyRule {
        arn: String,
        name: String,
        rule: String,
    },
    #[error("safety rule {0} does not exist, so it cannot be overridden")]
    UnknownRule(String),
}

pub fn control_panel_arn(panel: &str) -> String {
    format!("{ARN_PREFIX}:controlpanel/{panel}")
}

impl Cluster {
    /// A fresh cluster over `regions`, each application active where `active` says.
    pub fn new(regions: &[String], active: &BTreeMap<App, String>) -> Cluster {
        let initial = keel_routing::initial_states(regions, active);
        let controls = standard_controls(regions)
            .into_iter()
            .map(|(panel, name)| RoutingControl {
                arn: format!("{}/routingcontrol/{name}", control_panel_arn(&panel)),
                on: initial[&name],
                name,
                control_panel_arn: control_panel_arn(&panel),
                control_panel_name: panel,
            })
            .collect();
        let rules = standard_rules(regions)
            .into_iter()
            .map(|rule| {
                let panel = App::ALL
                    .into_iter()
                    .find(|app| rule.name.starts_with(app.name()))
                    .map_or("keel", App::name);
                (
                    format!("{}/safetyrule/{}", control_panel_arn(panel), rule.name),
                    rule,
                )
            })
            .collect();
        Cluster { controls, rules }
    }

    pub fn control(&self, arn: &str) -> Option<&RoutingControl> {
        self.controls.iter().find(|c| c.arn == arn)
    }

    /// Applies every change at once, or none: the state after all of them must keep every safety
    /// rule except those named in `overrides` (by ARN or name), as ARC's break-glass override.
    pub fn update(
        &mut self,
        changes: &[(String, bool)],
        overrides: &[String],
    ) -> Result<(), Refusal> {
        for rule in overrides {
            if !self
                .rules
                .iter()
                .any(|(arn, r)| arn == rule || &r.name == rule)
            {
                return Err(Refusal::UnknownRule(rule.clone()));
            }
        }
        let mut states: BTreeMap<String, bool> = self
            .controls
            .iter()
            .map(|c| (c.name.clone(), c.on))
            .collect();
        for (arn, on) in changes {
            let control = self
                .control(arn)
                .ok_or_else(|| Refusal::UnknownControl(arn.clone()))?;
            states.insert(control.name.clone(), *on);
        }
        for (arn, rule) in &self.rules {
            let overridden = overrides.iter().any(|o| o == arn || o == &rule.name);
            if !overridden && !rule.holds(&states) {
                return Err(Refusal::SafetyRule {
                    arn: arn.clone(),
                    name: rule.name.clone(),
                    rule: rule.describe(),
                });
            }
        }
        for control in &mut self.controls {
            control.on = states[&control.name];
        }
        Ok(())
    }
}

/// The cluster's state on disk, shared by every endpoint process pointed at the same file.
#[derive(Debug, Clone)]
pub struct SharedState {
    path: PathBuf,
    lock: PathBuf,
}

impl SharedState {
    /// Uses `path`, creating it as `initial` if no endpoint has yet.
    pub fn open(path: &Path, initial: impl FnOnce() -> Cluster) -> std::io::Result<SharedState> {
        let state = SharedState {
            path: path.to_owned(),
            lock: path.with_extension("lock"),
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let _guard = state.locked(true)?;
        if !path.exists() {
            state.write(&initial())?;
        }
        Ok(state)
    }

    fn locked(&self, exclusive: bool) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        if exclusive {
            file.lock()?;
        } else {
            file.lock_shared()?;
        }
        Ok(file)
    }

    fn read_unlocked(&self) -> std::io::Result<Cluster> {
        let bytes = fs::read(&self.path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    fn write(&self, cluster: &Cluster) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(cluster).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    pub fn read(&self) -> std::io::Result<Cluster> {
        let _guard = self.locked(false)?;
        self.read_unlocked()
    }

    /// Reads, changes and writes the state under the exclusive lock; nothing is written when
    /// `change` refuses.
    pub fn modify<T>(
        &self,
        change: impl FnOnce(&mut Cluster) -> Result<T, Refusal>,
    ) -> std::io::Result<Result<T, Refusal>> {
        let _guard = self.locked(true)?;
        let mut cluster = self.read_unlocked()?;
        let outcome = change(&mut cluster);
        if outcome.is_ok() {
            self.write(&cluster)?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_routing::{control_name, Gate};

    fn cluster() -> Cluster {
        let regions = ["us-east-1", "us-west-2"].map(str::to_owned);
        let active = BTreeMap::from([
            (App::TradeMatching, "us-east-1".to_owned()),
            (App::Settlement, "us-east-1".to_owned()),
        ]);
        Cluster::new(&regions, &active)
    }

    fn arn(cluster: &Cluster, app: App, gate: Gate, region: &str) -> String {
        let name = control_name(app, gate, region);
        cluster
            .controls
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .arn
            .clone()
    }

    #[test]
    fn a_second_region_processing_is_refused_and_nothing_changes() {
        let mut cluster = cluster();
        let before = cluster.clone();
        let west = arn(&cluster, App::TradeMatching, Gate::Processing, "us-west-2");
        let refusal = cluster.update(&[(west, true)], &[]).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::SafetyRule { name, .. } if name == "trade-matching-processing-in-one-region"),
            "{refusal:?}"
        );
        assert_eq!(cluster, before);
    }

    #[test]
    fn a_handover_in_one_batch_is_accepted_and_the_override_is_explicit() {
        let mut cluster = cluster();
        let east = arn(&cluster, App::Settlement, Gate::Processing, "us-east-1");
        let east_traffic = arn(&cluster, App::Settlement, Gate::Traffic, "us-east-1");
        let west = arn(&cluster, App::Settlement, Gate::Processing, "us-west-2");
        cluster
            .update(
                &[
                    (east_traffic, false),
                    (east.clone(), false),
                    (west.clone(), true),
                ],
                &[],
            )
            .unwrap();
        assert!(cluster.control(&west).unwrap().on);
        // Both on only with the rule named for override (ARC's break glass).
        cluster
            .update(
                &[(east.clone(), true)],
                &["settlement-processing-in-one-region".to_owned()],
            )
            .unwrap();
        assert_eq!(
            cluster.update(&[(east, false)], &["no-such-rule".to_owned()]),
            Err(Refusal::UnknownRule("no-such-rule".to_owned()))
        );
    }

    #[test]
    fn state_is_shared_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arc.json");
        let one = SharedState::open(&path, cluster).unwrap();
        let two = SharedState::open(&path, || panic!("already created")).unwrap();
        let generator = one
            .read()
            .unwrap()
            .controls
            .iter()
            .find(|c| c.name == "generator")
            .unwrap()
            .arn
            .clone();
        one.modify(|c| c.update(&[(generator.clone(), false)], &[]))
            .unwrap()
            .unwrap();
        assert!(!two.read().unwrap().control(&generator).unwrap().on);
    }
}
