//! A seeded random schedule of faults over the stack's processes.

use std::fmt;

use keel_routing::App;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// What can be hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Target {
    Service {
        region: String,
        name: &'static str,
    },
    Broker {
        region: String,
    },
    /// The application's primary database (in its active region at the time of the fault).
    Primary {
        app: App,
    },
    /// The application's streaming standby.
    Standby {
        app: App,
    },
    ArcEndpoint {
        index: usize,
    },
    /// The DynamoDB endpoint holding the runbook lock, journals and audit.
    RunbookStore,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Service { region, name } => write!(f, "{name} in {region}"),
            Target::Broker { region } => write!(f, "the broker in {region}"),
            Target::Primary { app } => write!(f, "{app}'s primary"),
            Target::Standby { app } => write!(f, "{app}'s standby"),
            Target::ArcEndpoint { index } => write!(f, "ARC endpoint {index}"),
            Target::RunbookStore => write!(f, "the DynamoDB endpoint"),
        }
    }
}

/// Links of the network between the processes (the chaos network's relays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "path", rename_all = "kebab-case")]
pub enum Path {
    /// A region's services to one of their own databases.
    Database { region: String, app: App },
    /// A region's services to their own broker.
    Broker { region: String },
    /// Every link from one region to the other, both ways: replication, the brokers between
    /// the applications.
    BetweenRegions,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Database { region, app } => write!(f, "{region}'s link to its {app} database"),
            Path::Broker { region } => write!(f, "{region}'s link to its broker"),
            Path::BetweenRegions => write!(f, "the links between the regions"),
        }
    }
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL, then started again after `down_ms` (a supervisor's restart).
    Kill { target: Target, down_ms: u64 },
    /// SIGSTOP, then SIGCONT after `paused_ms`: a process that hangs and comes back.
    Pause { target: Target, paused_ms: u64 },
    /// `region` cut off from the other region and the ARC endpoints for `for_ms` while its
    /// processes keep running: what crosses is dropped without a word (or, with `reset`, every
    /// connection is reset and new ones refused).
    Isolate {
        region: String,
        for_ms: u64,
        reset: bool,
    },
    /// Every chunk on `path` delayed by `latency_ms`, for `for_ms`: a dependency slow, not dead.
    Slow {
        path: Path,
        latency_ms: u64,
        for_ms: u64,
    },
    /// A planned rotation of `app` to the other region, started at this moment.
    Rotate { app: App },
    /// An unplanned failover of `app` to the other region with both regions up (the source is
    /// fenced and its database stopped), re-protected once the run heals.
    Failover { app: App },
    /// A planned rotation of `app` whose keelctl is SIGKILLed after `after_ms`; the next keelctl
    /// must resume it or refuse cleanly.
    KillKeelctl { app: App, after_ms: u64 },
}

impl Fault {
    pub fn class(&self) -> FaultClass {
        match self {
            Fault::Kill {
                target: Target::Primary { .. } | Target::Standby { .. },
                ..
            } => FaultClass::KillDatabase,
            Fault::Kill {
                target: Target::Broker { .. },
                ..
            } => FaultClass::KillBroker,
            Fault::Kill {
                target: Target::ArcEndpoint { .. },
                ..
            } => FaultClass::KillArc,
            Fault::Kill {
                target: Target::RunbookStore,
                ..
            } => FaultClass::KillRunbookStore,
            Fault::Kill { .. } => FaultClass::KillService,
            Fault::Pause { .. } => FaultClass::Pause,
            Fault::Isolate { .. } => FaultClass::Isolate,
            Fault::Slow { .. } => FaultClass::Slow,
            Fault::Rotate { .. } => FaultClass::Rotate,
            Fault::Failover { .. } => FaultClass::Failover,
            Fault::KillKeelctl { .. } => FaultClass::KillKeelctl,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { target, down_ms } => {
                write!(f, "SIGKILL {target}, back after {down_ms} ms")
            }
            Fault::Pause { target, paused_ms } => {
                write!(f, "SIGSTOP {target} for {paused_ms} ms")
            }
            Fault::Isolate {
                region,
                for_ms,
                reset,
            } => write!(
                f,
                "cut {region} off for {for_ms} ms ({})",
                if *reset {
                    "connections reset"
                } else {
                    "packets dropped"
                }
            ),
            Fault::Slow {
                path,
                latency_ms,
                for_ms,
            } => write!(f, "{path} slowed by {latency_ms} ms for {for_ms} ms"),
            Fault::Rotate { app } => write!(f, "rotate {app} to the other region"),
            Fault::Failover { app } => write!(f, "fail {app} over to the other region"),
            Fault::KillKeelctl { app, after_ms } => {
                write!(
                    f,
                    "rotate {app}, SIGKILL keelctl after {after_ms} ms, run it again"
                )
            }
        }
    }
}

/// The classes, for the table of a release's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultClass {
    KillService,
    KillBroker,
    KillDatabase,
    KillArc,
    KillRunbookStore,
    Pause,
    Isolate,
    Slow,
    Rotate,
    Failover,
    KillKeelctl,
}

impl FaultClass {
    pub const ALL: [FaultClass; 11] = [
        FaultClass::KillService,
        FaultClass::KillBroker,
        FaultClass::KillDatabase,
        FaultClass::KillArc,
        FaultClass::KillRunbookStore,
        FaultClass::Pause,
        FaultClass::Isolate,
        FaultClass::Slow,
        FaultClass::Rotate,
        FaultClass::Failover,
        FaultClass::KillKeelctl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultClass::KillService => "kill service",
            FaultClass::KillBroker => "kill broker",
            FaultClass::KillDatabase => "kill database",
            FaultClass::KillArc => "kill ARC endpoint",
            FaultClass::KillRunbookStore => "kill DynamoDB",
            FaultClass::Pause => "pause",
            FaultClass::Isolate => "region cut off",
            FaultClass::Slow => "slow link",
            FaultClass::Rotate => "rotation",
            FaultClass::Failover => "failover",
            FaultClass::KillKeelctl => "kill keelctl",
        }
    }
}

/// A fault at a moment of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scheduled {
    pub at_ms: u64,
    pub fault: Fault,
}

/// What the faults may hit.
#[derive(Debug, Clone)]
pub struct Space {
    pub regions: Vec<String>,
    pub services: Vec<&'static str>,
    pub arc_endpoints: usize,
    /// The links can be broken (the stack runs the chaos network).
    pub network: bool,
    /// The runbook store is the stack's own, and may be killed.
    pub runbook_store: bool,
}

/// The faults of one run, in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub seed: u64,
    pub faults: Vec<Scheduled>,
}

impl Schedule {
    /// `count` faults within the first `window_ms` of a run, from `seed`. At most one rotation (of
    /// either kind) per application, and none within `window_ms / 4` of the end, so each can finish
    /// while the run lasts.
    pub fn generate(seed: u64, space: &Space, window_ms: u64, count: usize) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rotated: Vec<App> = Vec::new();
        let mut faults = Vec::with_capacity(count);
        while faults.len() < count {
            let at_ms = rng.random_range(0..window_ms.max(1));
            let fault = match rng.random_range(0..100u32) {
                0..=27 => Fault::Kill {
                    target: Target::Service {
                        region: pick(&mut rng, &space.regions).clone(),
                        name: space.services[rng.random_range(0..space.services.len())],
                    },
                    down_ms: rng.random_range(0..3_000),
                },
                28..=35 => Fault::Kill {
                    target: Target::Broker {
                        region: pick(&mut rng, &space.regions).clone(),
                    },
                    down_ms: rng.random_range(500..3_000),
                },
                36..=43 => Fault::Kill {
                    target: if rng.random_bool(0.6) {
                        Target::Primary {
                            app: pick_app(&mut rng),
                        }
                    } else {
                        Target::Standby {
                            app: pick_app(&mut rng),
                        }
                    },
                    down_ms: rng.random_range(500..3_000),
                },
                44..=48 if space.arc_endpoints > 0 => Fault::Kill {
                    target: Target::ArcEndpoint {
                        index: rng.random_range(0..space.arc_endpoints),
                    },
                    down_ms: rng.random_range(500..5_000),
                },
                49..=52 if space.runbook_store => Fault::Kill {
                    target: Target::RunbookStore,
                    down_ms: rng.random_range(500..5_000),
                },
                // Long enough, often, for the region's services to fence themselves.
                53..=60 if space.network => Fault::Isolate {
                    region: pick(&mut rng, &space.regions).clone(),
                    for_ms: rng.random_range(1_000..12_000),
                    reset: rng.random_bool(0.3),
                },
                61..=68 if space.network => Fault::Slow {
                    path: match rng.random_range(0..3) {
                        0 => Path::Database {
                            region: pick(&mut rng, &space.regions).clone(),
                            app: pick_app(&mut rng),
                        },
                        1 => Path::Broker {
                            region: pick(&mut rng, &space.regions).clone(),
                        },
                        _ => Path::BetweenRegions,
                    },
                    latency_ms: rng.random_range(20..400),
                    for_ms: rng.random_range(2_000..10_000),
                },
                44..=84 => Fault::Pause {
                    target: Target::Service {
                        region: pick(&mut rng, &space.regions).clone(),
                        name: space.services[rng.random_range(0..space.services.len())],
                    },
                    paused_ms: rng.random_range(200..4_000),
                },
                _ => {
                    let app = pick_app(&mut rng);
                    if rotated.contains(&app) || at_ms > window_ms - window_ms / 4 {
                        continue;
                    }
                    rotated.push(app);
                    match rng.random_range(0..3) {
                        0 => Fault::Rotate { app },
                        1 => Fault::Failover { app },
                        _ => Fault::KillKeelctl {
                            app,
                            after_ms: rng.random_range(100..2_000),
                        },
                    }
                }
            };
            faults.push(Scheduled { at_ms, fault });
        }
        faults.sort_by_key(|s| s.at_ms);
        Schedule { seed, faults }
    }
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn pick_app(rng: &mut StdRng) -> App {
    *pick(rng, &App::ALL)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schedule (seed {}):", self.seed)?;
        for s in &self.faults {
            writeln!(f, "  {:>6} ms  {}", s.at_ms, s.fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn space() -> Space {
        Space {
            regions: vec!["us-east-1".into(), "us-west-2".into()],
            services: vec![
                "ingress",
                "ingestion",
                "matching",
                "notification",
                "settlement",
            ],
            arc_endpoints: 3,
            network: true,
            runbook_store: true,
        }
    }

    proptest! {
        #[test]
        fn a_seed_gives_one_schedule_in_time_order_within_its_window(
            seed in any::<u64>(), count in 1usize..40, window in 1_000u64..120_000
        ) {
            let one = Schedule::generate(seed, &space(), window, count);
            prop_assert_eq!(&one, &Schedule::generate(seed, &space(), window, count));
            prop_assert_eq!(one.faults.len(), count);
            prop_assert!(one.faults.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            prop_assert!(one.faults.iter().all(|s| s.at_ms < window));
            for app in App::ALL {
                let rotations = one.faults.iter().filter(|s| matches!(
                    s.fault,
                    Fault::Rotate { app: a } | Fault::KillKeelctl { app: a, .. } if a == app
                )).count();
                let failovers = one.faults.iter().filter(|s| matches!(
                    s.fault, Fault::Failover { app: a } if a == app)).count();
                prop_assert!(rotations + failovers <= 1, "{app} moved {} times", rotations + failovers);
            }
        }
    }

    #[test]
    fn every_class_turns_up_over_enough_seeds() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            for s in Schedule::generate(seed, &space(), 60_000, 8).faults {
                seen.insert(s.fault.class());
            }
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), FaultClass::ALL);
    }

    #[test]
    fn a_stack_without_the_network_or_a_store_of_its_own_gets_no_fault_on_them() {
        let space = Space {
            network: false,
            runbook_store: false,
            ..space()
        };
        for seed in 0..200 {
            for s in Schedule::generate(seed, &space, 60_000, 8).faults {
                assert!(!matches!(
                    s.fault.class(),
                    FaultClass::Isolate | FaultClass::Slow | FaultClass::KillRunbookStore
                ));
            }
        }
    }
}
