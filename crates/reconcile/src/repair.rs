use serde::Serialize;
use uuid::Uuid;

use crate::{Hop, HopDiff};

/// What one gap needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Repair {
    /// Produced but never consumed: publish the upstream's stored message again, to the topic in
    /// the region where the receiving application is active. The consumer's inbox makes a replay
    /// of something it did see harmless.
    Replay { id: Uuid },
    /// Consumed downstream but lost upstream, across applications (an asynchronous failover of the
    /// upstream's database lost its tail): restore the message into the upstream's outbox, marked
    /// published, from the downstream's copy, so the upstream's record of what it sent is whole.
    Restore { id: Uuid },
    /// Both sides hold the id with different content, or the downstream holds an id its own
    /// application's upstream never had. Ids derive from content, so neither can happen without
    /// corruption or a bug: nothing is overwritten; the id is audited and must be looked at.
    Investigate { id: Uuid, why: String },
}

impl Repair {
    pub fn id(&self) -> Uuid {
        match self {
            Repair::Replay { id } | Repair::Restore { id } | Repair::Investigate { id, .. } => *id,
        }
    }
}

/// The repair of every gap in `diff`, one per id.
pub fn repairs(hop: &Hop, diff: &HopDiff) -> Vec<Repair> {
    let replays = diff.missing.iter().map(|id| Repair::Replay { id: *id });
    let differing = diff.differing.iter().map(|d| Repair::Investigate {
        id: d.id,
        why: format!(
            "content differs: upstream {} downstream {}",
            d.upstream, d.downstream
        ),
    });
    let orphans = diff.orphaned.iter().map(|id| {
        if hop.crosses_applications() {
            Repair::Restore { id: *id }
        } else {
            // Both sides are in one database, replicated as one: the downstream cannot be ahead.
            Repair::Investigate {
                id: *id,
                why: format!(
                    "consumed by {} but unknown to {}",
                    hop.downstream.schema, hop.upstream.schema
                ),
            }
        }
    });
    replays.chain(differing).chain(orphans).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_record as record;
    use crate::{diff, hops};

    #[test]
    fn a_replay_for_missing_a_restore_across_applications_and_a_look_otherwise() {
        let gaps = diff(
            &[record(1, "a"), record(2, "b")],
            &[record(2, "c"), record(3, "d")],
        );
        let within = &hops()[0];
        let across = hops().iter().find(|h| h.crosses_applications()).unwrap();
        let within_repairs = repairs(within, &gaps);
        assert_eq!(
            within_repairs[0],
            Repair::Replay {
                id: record(1, "").id
            }
        );
        assert!(
            matches!(&within_repairs[1], Repair::Investigate { why, .. } if why.contains("content differs"))
        );
        assert!(
            matches!(&within_repairs[2], Repair::Investigate { why, .. } if why.contains("unknown to ingress"))
        );
        assert_eq!(
            repairs(across, &gaps)[2],
            Repair::Restore {
                id: record(3, "").id
            }
        );
        assert_eq!(within_repairs.len(), gaps.gaps());
    }
}
