use chrono::{DateTime, Utc};
use keel_domain::{LegId, LegRole, MatchKey, ParticipantId, TradeBlock, TradeId, TradeStatus};
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

    /// Applies one command and returns the history entries it appends (possibly none: a redelivered
    /// leg changes nothing).
    pub fn apply(&mut self, command: Command, policy: &MatchPolicy) -> Vec<HistoryEntry> {
        let mut entries = Vec::new();
        match command {
            Command::Leg(leg) => self.accept_leg(leg, policy, &mut entries),
            Command::RejectLeg {
                leg_id,
                sender,
                reasons,
                at,
            } => {
                if self.status.is_none() {
                    self.status = Some(TradeStatus::Rejected);
                }
                self.record(
                    &mut entries,
                    TradeStatus::Rejected,
                    at,
                    Some(reasons.join("; ")),
                    vec![sender],
                    Some(leg_id),
                );
            }
            Command::Cancel { requested_by, at } => match self.status {
                Some(status) if status.is_final() => {
                    let reason = format!("cannot cancel: trade is {status}");
                    self.record(
                        &mut entries,
                        TradeStatus::Rejected,
                        at,
                        Some(reason),
                        vec![requested_by],
                        None,
                    );
                }
                _ => {
                    self.status = Some(TradeStatus::Cancelled);
                    self.expires_at = None;
                    let reason = format!("cancelled by {requested_by}");
                    self.record(
                        &mut entries,
                        TradeStatus::Cancelled,
                        at,
                        Some(reason),
                        self.parties(),
                        None,
                    );
                }
            },
            Command::Expire { now } => {
                if self.status == Some(TradeStatus::Unmatched)
                    && self.expires_at.is_some_and(|at| at <= now)
                {
                    let at = self.expires_at.take().unwrap_or(now);
                    self.status = Some(TradeStatus::Expired);
                    let reason = "no counterparty leg within the match window".to_owned();
                    self.record(
                        &mut entries,
                        TradeStatus::Expired,
                        at,
                        Some(reason),
                        self.parties(),
                        None,
                    );
                }
            }
        }
        entries
    }

    fn accept_leg(&mut self, leg: Leg, policy: &MatchPolicy, entries: &mut Vec<HistoryEntry>) {
        let role = leg.role();
        let at = leg.received_at;
        if let Some(current) = self.leg(role) {
            if current.leg_id == leg.leg_id {
                return; // The same version again: already applied.
            }
            if current.block.version >= leg.block.version {
                let reason = format!(
                    "version {} is not newer than the current version {}",
                    leg.block.version.get(),
                    current.block.version.get()
                );
                self.record(
                    entries,
                    TradeStatus::Rejected,
                    at,
                    Some(reason),
                    vec![leg.sender],
                    Some(leg.leg_id),
                );
                return;
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
            self.record(
                entries,
                TradeStatus::Rejected,
                at,
                Some(reason),
                vec![leg.sender],
                Some(leg.leg_id),
            );
            return;
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
            }
        }
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
