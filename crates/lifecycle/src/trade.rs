use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keel_domain::{
    Allocation, LegId, LegRole, MatchKey, ParticipantId, TradeBlock, TradeId, TradeStatus,
};
use serde::{Deserialize, Serialize};

use crate::{compare_legs, MatchOutcome, MatchPolicy};

/// One party's accepted leg, as matching keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub leg_id: LegId,
    pub sender: ParticipantId,
    pub block: TradeBlock,
    /// When ingress durably accepted this version of the leg.
    pub received_at: DateTime<Utc>,
}

impl Leg {
    pub fn role(&self) -> LegRole {
        self.block.role_of(&self.sender)
    }
}

/// What can happen to a trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A leg (or an amendment of one) that passed validation.
    Leg(Leg),
    /// A leg that failed validation downstream of ingress; only its sender hears of it.
    RejectLeg {
        leg_id: LegId,
        sender: ParticipantId,
        reasons: Vec<String>,
        at: DateTime<Utc>,
    },
    /// A party asks to cancel the trade.
    Cancel {
        requested_by: ParticipantId,
        at: DateTime<Utc>,
    },
    /// Time has passed; a lone leg whose window has run out expires.
    Expire { now: DateTime<Utc> },
    /// Settlement's answer for one allocation of a MATCHED trade.
    SettlementResult {
        allocation_id: String,
        outcome: AllocationOutcome,
        at: DateTime<Utc>,
    },
    /// Settlement withdrew every instruction of the trade: nothing of it will settle.
    CancelConfirmed {
        requested_by: ParticipantId,
        at: DateTime<Utc>,
    },
    /// Settlement had already settled (or failed) the trade's instructions.
    CancelRefused {
        requested_by: ParticipantId,
        reason: String,
        at: DateTime<Utc>,
    },
}

/// How one allocation's settlement ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AllocationOutcome {
    Settled,
    Failed { reason: String },
}

/// Where one allocation of a MATCHED trade is in settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AllocationState {
    Pending,
    Settled,
    Failed { reason: String },
    Cancelled,
}

/// A MATCHED trade's allocations out for settlement, and a cancel waiting for settlement's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementProgress {
    pub allocations: BTreeMap<String, AllocationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_by: Option<ParticipantId>,
}

/// What the caller must send to the settlement application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToSettlement {
    /// Settle each of these allocations of the (just MATCHED) trade, one instruction each.
    Settle { allocations: Vec<Allocation> },
    /// Withdraw the trade's instructions if none has settled yet.
    Cancel {
        requested_by: ParticipantId,
        at: DateTime<Utc>,
    },
}

/// What applying a command produced: history to append (and notify) and messages for settlement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub history: Vec<HistoryEntry>,
    pub to_settlement: Vec<ToSettlement>,
    /// The trade's state changed and must be saved. True whenever history or requests came out, and
    /// also when one allocation's result arrived before the others (recorded, not yet announced).
    pub changed: bool,
}

/// One appended line of a trade's status history. `recipients` are told of it, once each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u32,
    pub status: TradeStatus,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    pub recipients: Vec<ParticipantId>,
    /// For MISMATCHED: every field that differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differing_fields: Vec<String>,
    /// For RECEIVED and REJECTED: the leg concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leg_id: Option<LegId>,
}

/// A trade as matching holds it: its legs, its current status and where its history stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub trade_id: TradeId,
    pub match_key: MatchKey,
    /// `None` until the first entry is appended.
    pub status: Option<TradeStatus>,
    pub im_leg: Option<Leg>,
    pub broker_leg: Option<Leg>,
    /// Sequence number the next history entry gets.
    pub next_seq: u32,
    /// When a lone leg expires; `None` unless the trade is UNMATCHED.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set once the trade is MATCHED and its allocations go to settlement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementProgress>,
}

impl Trade {
    pub fn new(match_key: MatchKey) -> Self {
        Trade {
            trade_id: match_key.trade_id(),
            match_key,
            status: None,
            im_leg: None,
            broker_leg: None,
            next_seq: 1,
            expires_at: None,
            settlement: None,
        }
    }

    fn parties(&self) -> Vec<ParticipantId> {
        vec![
            self.match_key.im_id.clone(),
            self.match_key.broker_id.clone(),
        ]
    }

    fn leg(&self, role: LegRole) -> Option<&Leg> {
        match role {
            LegRole::Im => self.im_leg.as_ref(),
            LegRole::Broker => self.broker_leg.as_ref(),
        }
    }

    /// Applies one command and returns its effects (possibly none: a redelivered leg or a repeated
    /// settlement result changes nothing).
    pub fn apply(&mut self, command: Command, policy: &MatchPolicy) -> Effects {
        let mut effects = Effects::default();
        let entries = &mut effects.history;
        match command {
            Command::Leg(leg) => {
                if self.accept_leg(leg, policy, entries) {
                    let allocations = self
                        .im_leg
                        .as_ref()
                        .map(|im| im.block.allocations.clone())
                        .unwrap_or_default();
                    self.settlement = Some(SettlementProgress {
                        allocations: allocations
                            .iter()
                            .map(|a| (a.allocation_id.clone(), AllocationState::Pending))
                            .collect(),
                        cancel_requested_by: None,
                    });
                    effects
                        .to_settlement
                        .push(ToSettlement::Settle { allocations });
                }
            }
            Command::RejectLeg {
                leg_id,
                sender,
                reasons,
                at,
            } => {
                if self.status.is_none() {
                    self.status = Some(TradeStatus::Rejected);
                }
                self.reject(entries, at, reasons.join("; "), sender, Some(leg_id));
            }
            Command::Cancel { requested_by, at } => {
                if let Some(request) = self.cancel(requested_by, at, entries) {
                    effects.to_settlement.push(request);
                }
            }
            Command::Expire { now } => {
                if self.status == Some(TradeStatus::Unmatched)
                    && self.expires_at.is_some_and(|at| at <= now)
                {
                    let at = self.expires_at.take().unwrap_or(now);
                    self.status = Some(TradeStatus::Expired);
                    let reason = "no counterparty leg within the match window".to_owned();
                    self.record(
                        entries,
                        TradeStatus::Expired,
                        at,
                        Some(reason),
                        self.parties(),
                        None,
                    );
                }
            }
            Command::SettlementResult {
                allocation_id,
                outcome,
                at,
            } => {
                effects.changed = self.settlement_result(allocation_id, outcome, at, entries);
            }
            Command::CancelConfirmed { requested_by, at } => {
                if self.status != Some(TradeStatus::Matched) {
                    return effects;
                }
                let Some(progress) = self.settlement.as_mut() else {
                    return effects;
                };
                if progress.cancel_requested_by.take().is_none() {
                    return effects; // Already answered.
                }
                for state in progress.allocations.values_mut() {
                    if *state == AllocationState::Pending {
                        *state = AllocationState::Cancelled;
                    }
                }
                self.status = Some(TradeStatus::Cancelled);
                let reason = format!("cancelled by {requested_by} before settlement");
                self.record(
                    entries,
                    TradeStatus::Cancelled,
                    at,
                    Some(reason),
                    self.parties(),
                    None,
                );
            }
            Command::CancelRefused {
                requested_by,
                reason,
                at,
            } => {
                let pending = self
                    .settlement
                    .as_mut()
                    .and_then(|progress| progress.cancel_requested_by.take());
                if pending.is_some() {
                    let reason = format!("cannot cancel: {reason}");
                    self.reject(entries, at, reason, requested_by, None);
                }
            }
        }
        effects.changed |= !effects.history.is_empty() || !effects.to_settlement.is_empty();
        effects
    }

    /// A cancel ends an unsettled trade at once, unless its instructions are with settlement: then
    /// settlement decides (it may have settled them already), and the answer comes back as
    /// [`Command::CancelConfirmed`] or [`Command::CancelRefused`].
    fn cancel(
        &mut self,
        requested_by: ParticipantId,
        at: DateTime<Utc>,
        entries: &mut Vec<HistoryEntry>,
    ) -> Option<ToSettlement> {
        let pending = self
            .settlement
            .as_ref()
            .and_then(|progress| progress.cancel_requested_by.as_ref());
        let refusal = match (self.status, pending) {
            (Some(status), _) if status.is_final() => {
                Some(format!("cannot cancel: trade is {status}"))
            }
            (Some(TradeStatus::Matched), Some(first)) => Some(format!(
                "cannot cancel: a cancel requested by {first} is already with settlement"
            )),
            _ => None,
        };
        if let Some(reason) = refusal {
            self.reject(entries, at, reason, requested_by, None);
            return None;
        }
        if self.status == Some(TradeStatus::Matched) {
            if let Some(progress) = self.settlement.as_mut() {
                progress.cancel_requested_by = Some(requested_by.clone());
                return Some(ToSettlement::Cancel { requested_by, at });
            }
        }
        self.status = Some(TradeStatus::Cancelled);
        self.expires_at = None;
        let reason = format!("cancelled by {requested_by}");
        self.record(
            entries,
            TradeStatus::Cancelled,
            at,
            Some(reason),
            self.parties(),
            None,
        );
        None
    }

    /// Records one allocation's result; once every allocation has one, the trade is SETTLED (all
    /// settled) or SETTLEMENT_FAILED (naming each allocation that failed). Returns whether the
    /// result was new.
    fn settlement_result(
        &mut self,
        allocation_id: String,
        outcome: AllocationOutcome,
        at: DateTime<Utc>,
        entries: &mut Vec<HistoryEntry>,
    ) -> bool {
        let Some(progress) = self.settlement.as_mut() else {
            return false;
        };
        let Some(state) = progress.allocations.get_mut(&allocation_id) else {
            return false;
        };
        if *state != AllocationState::Pending {
            return false; // Already recorded.
        }
        *state = match outcome {
            AllocationOutcome::Settled => AllocationState::Settled,
            AllocationOutcome::Failed { reason } => AllocationState::Failed { reason },
        };
        if self.status != Some(TradeStatus::Matched)
            || progress
                .allocations
                .values()
                .any(|s| *s == AllocationState::Pending)
        {
            return true;
        }
        let failures: Vec<String> = progress
            .allocations
            .iter()
            .filter_map(|(id, state)| match state {
                AllocationState::Failed { reason } => Some(format!("allocation {id}: {reason}")),
                _ => None,
            })
            .collect();
        let total = progress.allocations.len();
        let (status, reason) = if failures.is_empty() {
            let plural = if total == 1 { "" } else { "s" };
            (
                TradeStatus::Settled,
                format!("{total} allocation{plural} settled"),
            )
        } else {
            let settled = total - failures.len();
            (
                TradeStatus::SettlementFailed,
                format!(
                    "{}; {settled} of {total} allocations settled",
                    failures.join("; ")
                ),
            )
        };
        self.status = Some(status);
        self.record(entries, status, at, Some(reason), self.parties(), None);
        true
    }

    /// Returns whether the trade became MATCHED.
    fn accept_leg(
        &mut self,
        leg: Leg,
        policy: &MatchPolicy,
        entries: &mut Vec<HistoryEntry>,
    ) -> bool {
        let role = leg.role();
        let at = leg.received_at;
        if let Some(current) = self.leg(role) {
            if current.leg_id == leg.leg_id {
                return false; // The same version again: already applied.
            }
            if current.block.version >= leg.block.version {
                let reason = format!(
                    "version {} is not newer than the current version {}",
                    leg.block.version.get(),
                    current.block.version.get()
                );
                self.reject(entries, at, reason, leg.sender, Some(leg.leg_id));
                return false;
            }
        }
        if let Some(status) = self
            .status
            .filter(|s| s.is_final() || *s == TradeStatus::Matched)
        {
            let reason = match status {
                TradeStatus::Matched => "trade is MATCHED; cancel it to change it".to_owned(),
                other => format!("trade is {other}"),
            };
            self.reject(entries, at, reason, leg.sender, Some(leg.leg_id));
            return false;
        }

        let leg_id = leg.leg_id;
        let version = leg.block.version.get();
        match role {
            LegRole::Im => self.im_leg = Some(leg),
            LegRole::Broker => self.broker_leg = Some(leg),
        }
        let who = match role {
            LegRole::Im => "investment manager",
            LegRole::Broker => "broker",
        };
        let reason = Some(format!("{who} leg, version {version}"));
        self.record(
            entries,
            TradeStatus::Received,
            at,
            reason,
            self.parties(),
            Some(leg_id),
        );

        match (&self.im_leg, &self.broker_leg) {
            (Some(im), Some(broker)) => {
                self.expires_at = None;
                match compare_legs(&im.block, &broker.block, policy) {
                    MatchOutcome::Matched => {
                        self.status = Some(TradeStatus::Matched);
                        self.record(
                            entries,
                            TradeStatus::Matched,
                            at,
                            None,
                            self.parties(),
                            None,
                        );
                        return true;
                    }
                    MatchOutcome::Mismatched(fields) => {
                        self.status = Some(TradeStatus::Mismatched);
                        let reason = Some(format!("fields differ: {}", fields.join(", ")));
                        let entry = self.record(
                            entries,
                            TradeStatus::Mismatched,
                            at,
                            reason,
                            self.parties(),
                            None,
                        );
                        entry.differing_fields = fields.into_iter().map(str::to_owned).collect();
                    }
                }
                false
            }
            _ => {
                // The window runs from this leg's own receipt, so an amendment restarts it.
                self.expires_at = Some(at + policy.match_window);
                if self.status != Some(TradeStatus::Unmatched) {
                    self.status = Some(TradeStatus::Unmatched);
                    self.record(
                        entries,
                        TradeStatus::Unmatched,
                        at,
                        None,
                        self.parties(),
                        None,
                    );
                }
                false
            }
        }
    }

    /// Tells one participant that its leg or request was refused.
    fn reject(
        &mut self,
        entries: &mut Vec<HistoryEntry>,
        at: DateTime<Utc>,
        reason: String,
        to: ParticipantId,
        leg_id: Option<LegId>,
    ) {
        self.record(
            entries,
            TradeStatus::Rejected,
            at,
            Some(reason),
            vec![to],
            leg_id,
        );
    }

    fn record<'a>(
        &mut self,
        entries: &'a mut Vec<HistoryEntry>,
        status: TradeStatus,
        at: DateTime<Utc>,
        reason: Option<String>,
        recipients: Vec<ParticipantId>,
        leg_id: Option<LegId>,
    ) -> &'a mut HistoryEntry {
        let seq = self.next_seq;
        self.next_seq += 1;
        entries.push(HistoryEntry {
            seq,
            status,
            at,
            reason,
            recipients,
            differing_fields: Vec::new(),
            leg_id,
        });
        entries.last_mut().expect("just pushed")
    }
}

#[cfg(test)]
mod tests;
