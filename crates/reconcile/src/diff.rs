use serde::Serialize;
use uuid::Uuid;

/// One message as a store holds it: its id and the digest of its content (computed by the store;
/// both sides of a hop must compute it the same way).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Record {
    pub id: Uuid,
    pub digest: String,
}

/// One id whose content the two sides disagree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Differing {
    pub id: Uuid,
    pub upstream: String,
    pub downstream: String,
}

/// One hop compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HopDiff {
    /// Ids on both sides with the same content.
    pub matched: usize,
    /// Produced upstream, never consumed downstream.
    pub missing: Vec<Uuid>,
    /// On both sides, with different content.
    pub differing: Vec<Differing>,
    /// Consumed downstream, unknown upstream.
    pub orphaned: Vec<Uuid>,
}

impl HopDiff {
    pub fn gaps(&self) -> usize {
        self.missing.len() + self.differing.len() + self.orphaned.len()
    }

    pub fn is_clean(&self) -> bool {
        self.gaps() == 0
    }

    /// Adds the gaps a later comparison of the same hop found that this one had not (a repairing
    /// run reports every gap it met once, whichever round met it). Lists stay sorted.
    pub fn absorb(&mut self, later: HopDiff) {
        fn union<T, K: Ord>(into: &mut Vec<T>, more: Vec<T>, key: impl Fn(&T) -> K) {
            into.extend(more);
            into.sort_by_key(&key);
            into.dedup_by(|a, b| key(a) == key(b));
        }
        union(&mut self.missing, later.missing, |id| *id);
        union(&mut self.differing, later.differing, |d| d.id);
        union(&mut self.orphaned, later.orphaned, |id| *id);
    }
}

/// Compares a hop's two sides by id, then digest. The caller chooses what each side holds: the
/// upstream's records of a time window, and the downstream's records with those ids plus its own
/// records of the window (an id downstream only counts as orphaned if the caller looked for it
/// upstream). Duplicate ids on one side count once. Every list in the result is sorted by id.
pub fn diff(upstream: &[Record], downstream: &[Record]) -> HopDiff {
    let sorted = |records: &[Record]| {
        let mut records = records.to_vec();
        records.sort();
        records.dedup_by(|a, b| a.id == b.id);
        records
    };
    let (upstream, downstream) = (sorted(upstream), sorted(downstream));
    let mut result = HopDiff::default();
    let (mut up, mut down) = (upstream.iter().peekable(), downstream.iter().peekable());
    loop {
        match (up.peek(), down.peek()) {
            (None, None) => break,
            (Some(u), None) => {
                result.missing.push(u.id);
                up.next();
            }
            (None, Some(d)) => {
                result.orphaned.push(d.id);
                down.next();
            }
            (Some(u), Some(d)) => match u.id.cmp(&d.id) {
                std::cmp::Ordering::Less => {
                    result.missing.push(u.id);
                    up.next();
                }
                std::cmp::Ordering::Greater => {
                    result.orphaned.push(d.id);
                    down.next();
                }
                std::cmp::Ordering::Equal => {
                    if u.digest == d.digest {
                        result.matched += 1;
                    } else {
                        result.differing.push(Differing {
                            id: u.id,
                            upstream: u.digest.clone(),
                            downstream: d.digest.clone(),
                        });
                    }
                    up.next();
                    down.next();
                }
            },
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::test_record as record;

    #[test]
    fn absorbing_a_later_comparison_adds_only_new_gaps() {
        let mut first = diff(&[record(1, "a"), record(2, "b")], &[record(2, "b")]);
        let later = diff(
            &[record(1, "a"), record(3, "c")],
            &[record(3, "x"), record(5, "e")],
        );
        first.absorb(later);
        assert_eq!(first.missing, vec![record(1, "").id]);
        assert_eq!(first.differing.len(), 1);
        assert_eq!(first.orphaned, vec![record(5, "").id]);
        assert_eq!(first.gaps(), 3);
    }

    #[test]
    fn names_each_kind_of_gap() {
        let upstream = [record(1, "a"), record(2, "b"), record(3, "c")];
        let downstream = [record(3, "c"), record(2, "x"), record(4, "d")];
        let result = diff(&upstream, &downstream);
        assert_eq!(result.matched, 1);
        assert_eq!(result.missing, vec![record(1, "").id]);
        assert_eq!(
            result.differing,
            vec![Differing {
                id: record(2, "").id,
                upstream: "b".into(),
                downstream: "x".into()
            }]
        );
        assert_eq!(result.orphaned, vec![record(4, "").id]);
        assert_eq!(result.gaps(), 3);
    }

    fn side() -> impl Strategy<Value = BTreeMap<u8, u8>> {
        proptest::collection::btree_map(0u8..40, 0u8..3, 0..30)
    }

    fn records(side: &BTreeMap<u8, u8>) -> Vec<Record> {
        side.iter()
            .map(|(id, digest)| record(*id, &digest.to_string()))
            .rev()
            .collect()
    }

    proptest! {
        /// Every id lands in exactly one bucket, and the right one.
        #[test]
        fn every_id_is_accounted_for_once(up in side(), down in side()) {
            let result = diff(&records(&up), &records(&down));
            let id = |n: &u8| record(*n, "").id;
            let missing: BTreeSet<Uuid> = up.keys().filter(|n| !down.contains_key(n)).map(id).collect();
            let orphaned: BTreeSet<Uuid> = down.keys().filter(|n| !up.contains_key(n)).map(id).collect();
            let differing: BTreeSet<Uuid> = up.iter().filter(|(n, d)| down.get(n).is_some_and(|e| e != *d)).map(|(n, _)| id(n)).collect();
            prop_assert_eq!(result.missing.iter().copied().collect::<BTreeSet<_>>(), missing);
            prop_assert_eq!(result.orphaned.iter().copied().collect::<BTreeSet<_>>(), orphaned);
            prop_assert_eq!(result.differing.iter().map(|d| d.id).collect::<BTreeSet<_>>(), differing);
            prop_assert_eq!(
                result.matched + result.missing.len() + result.differing.len() + result.orphaned.len(),
                up.keys().chain(down.keys()).collect::<BTreeSet<_>>().len()
            );
        }

        /// Swapping the sides swaps missing and orphaned.
        #[test]
        fn the_diff_is_symmetric(up in side(), down in side()) {
            let forward = diff(&records(&up), &records(&down));
            let backward = diff(&records(&down), &records(&up));
            prop_assert_eq!(forward.missing, backward.orphaned);
            prop_assert_eq!(forward.orphaned, backward.missing);
            prop_assert_eq!(forward.matched, backward.matched);
        }
    }
}
