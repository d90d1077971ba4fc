// Floats here are times in seconds, never amounts of money (the lint guards prices).
#![allow(clippy::float_arithmetic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::{Differing, HopDiff, Record};

/// The continuous reconciler's memory of one hop, so that a round costs in proportion to what is
/// new rather than to a window: the caller feeds it the upstream records published since the last
/// round and the downstream ids consumed since, looks up only what it asks for, and reads the gaps.
/// Times are seconds on one clock (the database's), passed in.
#[derive(Debug, Default)]
pub struct HopTracker {
    /// Published upstream, not (yet) seen downstream: digest and when it was produced.
    awaiting: BTreeMap<Uuid, (String, f64)>,
    differing: BTreeMap<Uuid, Differing>,
    orphaned: BTreeSet<Uuid>,
    /// Ids known on both sides, and when they were settled: a downstream read that overlaps the
    /// last one finds them here instead of asking the upstream again.
    accounted: HashMap<Uuid, f64>,
    matched: usize,
}

impl HopTracker {
    /// Upstream records newly published, each with when it was produced.
    pub fn produced(&mut self, records: impl IntoIterator<Item = (Record, f64)>) {
        for (record, at) in records {
            if self.accounted.contains_key(&record.id) || self.differing.contains_key(&record.id) {
                continue;
            }
            self.awaiting.insert(record.id, (record.digest, at));
        }
    }

    /// The ids to look for downstream now.
    pub fn awaited(&self) -> Vec<Uuid> {
        self.awaiting.keys().copied().collect()
    }

    /// What the downstream holds of the awaited ids (a digest of `None`: kept before inboxes kept
    /// payloads, compared by id only).
    pub fn found_downstream(&mut self, found: &[(Uuid, Option<String>)], now: f64) {
        for (id, digest) in found {
            let Some((upstream, _)) = self.awaiting.remove(id) else {
                continue;
            };
            match digest {
                Some(downstream) if *downstream != upstream => {
                    self.differing.insert(
                        *id,
                        Differing {
                            id: *id,
                            upstream,
                            downstream: downstream.clone(),
                        },
                    );
                }
                _ => {
                    self.matched += 1;
                    self.accounted.insert(*id, now);
                }
            }
        }
    }

    /// Of these ids consumed downstream since the last round (a read may overlap the last one),
    /// those not accounted for yet: the caller looks them up upstream.
    pub fn unaccounted(&self, consumed: &[Uuid]) -> Vec<Uuid> {
        consumed
            .iter()
            .filter(|id| {
                !self.accounted.contains_key(id)
                    && !self.awaiting.contains_key(id)
                    && !self.differing.contains_key(id)
                    && !self.orphaned.contains(id)
            })
            .copied()
            .collect()
    }

    /// The upstream's answer for ids it was asked about: those it holds will be (or were) matched
    /// through [`HopTracker::produced`]; those it does not hold are orphans.
    pub fn found_upstream(&mut self, asked: &[Uuid], held: &[Uuid], now: f64) {
        let held: BTreeSet<&Uuid> = held.iter().collect();
        for id in asked {
            if held.contains(id) {
                self.accounted.entry(*id).or_insert(now);
            } else {
                self.orphaned.insert(*id);
            }
        }
    }

    /// The open gaps to look at again: differing and orphaned ids.
    pub fn open(&self) -> (Vec<Uuid>, Vec<Uuid>) {
        (
            self.differing.keys().copied().collect(),
            self.orphaned.iter().copied().collect(),
        )
    }

    /// The open gaps as they are now, read again from both sides: what agrees or was restored is
    /// closed; a differing id the downstream no longer holds is awaited again.
    pub fn recheck(
        &mut self,
        upstream: &[Record],
        downstream: &[(Uuid, Option<String>)],
        now: f64,
    ) {
        let up: HashMap<Uuid, &str> = upstream.iter().map(|r| (r.id, r.digest.as_str())).collect();
        let down: HashMap<Uuid, Option<&str>> = downstream
            .iter()
            .map(|(id, digest)| (*id, digest.as_deref()))
            .collect();
        let differing: Vec<Uuid> = self.differing.keys().copied().collect();
        for id in differing {
            match (up.get(&id), down.get(&id)) {
                (Some(u), Some(Some(d))) if u != d => {
                    if let Some(gap) = self.differing.get_mut(&id) {
                        gap.upstream = (*u).to_owned();
                        gap.downstream = (*d).to_owned();
                    }
                }
                (Some(_), Some(_)) => {
                    self.differing.remove(&id);
                    self.matched += 1;
                    self.accounted.insert(id, now);
                }
                (Some(u), None) => {
                    self.differing.remove(&id);
                    self.awaiting.insert(id, ((*u).to_owned(), now));
                }
                (None, _) => {
                    self.differing.remove(&id);
                    self.orphaned.insert(id);
                }
            }
        }
        self.orphaned.retain(|id| {
            if up.contains_key(id) {
                // Restored upstream since.
                self.accounted.insert(*id, now);
                false
            } else {
                true
            }
        });
    }

    /// The gaps now: records awaited downstream that were produced more than `settle` seconds ago
    /// are missing (newer ones may still be in flight).
    pub fn gaps(&self, now: f64, settle: f64) -> HopDiff {
        HopDiff {
            matched: self.matched,
            missing: self
                .awaiting
                .iter()
                .filter(|(_, (_, at))| *at < now - settle)
                .map(|(id, _)| *id)
                .collect(),
            differing: self.differing.values().cloned().collect(),
            orphaned: self.orphaned.iter().copied().collect(),
        }
    }

    /// Forgets ids accounted for more than `keep` seconds ago: no read will bring them again.
    pub fn forget(&mut self, now: f64, keep: f64) {
        self.accounted.retain(|_, at| *at >= now - keep);
    }

    /// How many ids the tracker holds (its memory grows with what is new and what is open, not with
    /// the window).
    pub fn held(&self) -> usize {
        self.awaiting.len() + self.differing.len() + self.orphaned.len() + self.accounted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_record as record;

    fn id(n: u8) -> Uuid {
        record(n, "").id
    }

    #[test]
    fn a_record_seen_downstream_with_its_content_matches_and_is_not_asked_again() {
        let mut tracker = HopTracker::default();
        tracker.produced([(record(1, "a"), 10.0), (record(2, "b"), 10.0)]);
        assert_eq!(tracker.awaited(), vec![id(1), id(2)]);
        tracker.found_downstream(&[(id(1), Some("a".into()))], 11.0);
        assert_eq!(tracker.awaited(), vec![id(2)]);
        // A later downstream read that sees 1 again asks nothing upstream.
        assert!(tracker.unaccounted(&[id(1), id(2)]).is_empty());
        let gaps = tracker.gaps(11.0, 5.0);
        assert_eq!(gaps.matched, 1);
        assert!(gaps.is_clean(), "2 is still within the settle time");
        assert_eq!(tracker.gaps(20.0, 5.0).missing, vec![id(2)]);
    }

    #[test]
    fn other_content_downstream_differs_until_it_agrees_again() {
        let mut tracker = HopTracker::default();
        tracker.produced([(record(1, "a"), 0.0)]);
        tracker.found_downstream(&[(id(1), Some("x".into()))], 1.0);
        let gaps = tracker.gaps(100.0, 5.0);
        assert_eq!(gaps.differing.len(), 1);
        assert_eq!(gaps.differing[0].downstream, "x");
        let (differing, orphaned) = tracker.open();
        assert_eq!((differing, orphaned.len()), (vec![id(1)], 0));
        tracker.recheck(&[record(1, "a")], &[(id(1), Some("a".into()))], 2.0);
        assert!(tracker.gaps(100.0, 5.0).is_clean());
    }

    #[test]
    fn downstream_only_is_orphaned_until_restored_upstream() {
        let mut tracker = HopTracker::default();
        let asked = tracker.unaccounted(&[id(7), id(8)]);
        assert_eq!(asked, vec![id(7), id(8)]);
        tracker.found_upstream(&asked, &[id(8)], 1.0);
        assert_eq!(tracker.gaps(1.0, 0.0).orphaned, vec![id(7)]);
        // Asked once: an overlapping read does not ask again.
        assert!(tracker.unaccounted(&[id(7), id(8)]).is_empty());
        tracker.recheck(&[record(7, "r")], &[], 2.0);
        assert!(tracker.gaps(2.0, 0.0).is_clean());
    }

    #[test]
    fn memory_is_what_is_new_and_open_not_the_window() {
        let mut tracker = HopTracker::default();
        for round in 0..100u8 {
            let now = f64::from(round);
            tracker.produced([(record(round, "d"), now)]);
            let found: Vec<(Uuid, Option<String>)> = vec![(id(round), Some("d".to_owned()))];
            tracker.found_downstream(&found, now);
            tracker.forget(now, 10.0);
        }
        assert!(tracker.held() <= 11, "holds {}", tracker.held());
        assert_eq!(tracker.gaps(100.0, 0.0).matched, 100);
    }
}
