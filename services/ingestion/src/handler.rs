use keel_domain::TradeBlock;
use keel_messages::wire::Leg;
use keel_messages::{Submission, TradeCommand};
use keel_safestore::Outgoing;
use keel_streaming::{Handler, Inbound};
use sqlx::PgConnection;

pub struct Ingestion;

impl Handler for Ingestion {
    type Message = Submission;

    async fn apply(
        &self,
        _conn: &mut PgConnection,
        batch: &[&Inbound<Submission>],
    ) -> Result<Vec<Outgoing>, sqlx::Error> {
        Ok(batch
            .iter()
            .map(|message| Outgoing::of(&decide(&message.body)))
            .collect())
    }
}

/// Ingress already validated the block; this checks it again, so nothing that bypassed or predates
/// ingress's rules reaches matching, and confirms the leg id belongs to the content.
fn decide(submission: &Submission) -> TradeCommand {
    match submission {
        Submission::Leg {
            leg_id,
            trade_id,
            match_key,
            sender,
            received_at,
            block,
        } => {
            let reject = |reasons: Vec<String>| TradeCommand::RejectLeg {
                leg_id: *leg_id,
                trade_id: *trade_id,
                match_key: match_key.clone(),
                sender: sender.clone(),
                reasons,
                at: *received_at,
            };
            match TradeBlock::parse(block, sender) {
                Err(errors) => reject(
                    errors
                        .0
                        .into_iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect(),
                ),
                Ok(parsed)
                    if parsed.leg_id(sender) != *leg_id || parsed.match_key() != *match_key =>
                {
                    reject(vec![
                        "leg id or match key does not belong to the block".to_owned()
                    ])
                }
                Ok(parsed) => TradeCommand::Leg {
                    leg: Leg {
                        leg_id: *leg_id,
                        sender: sender.clone(),
                        block: parsed,
                        received_at: *received_at,
                    },
                },
            }
        }
        Submission::Cancel {
            trade_id,
            match_key,
            requested_by,
            requested_at,
        } => TradeCommand::Cancel {
            trade_id: *trade_id,
            match_key: match_key.clone(),
            requested_by: requested_by.clone(),
            at: *requested_at,
        },
    }
}
