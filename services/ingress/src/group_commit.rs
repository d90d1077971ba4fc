//! Group commit (DESIGN section 4): submissions that arrive together share one transaction, so many
//! clients sending one leg each share one fsync (and, with synchronous replication, one wait for the
//! standby), while each is still answered only after the commit that holds its legs.
//!
//! Requests queue for a small pool of committers. A committer takes every request waiting (up to a
//! bound in legs), records them in one transaction, and answers each. One request's refusal (a
//! reused idempotency key, a leg version resubmitted with other content) does not fail the others:
//! its rows are taken out again before the commit, and it alone gets the conflict.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use keel_domain::{LegId, ParticipantId, TradeBlock, TradeId};
use keel_messages::Submission;
use keel_platform::trace;
use keel_safestore::{Outgoing, PgPool};
use serde_json::{json, Value};
use sqlx::types::Json;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use crate::store::Durability;

/// A leg that passed every check, in its canonical form.
pub struct AcceptedLeg {
    pub leg_id: LegId,
    pub trade_id: TradeId,
    pub block: TradeBlock,
    pub canonical: Value,
    pub digest: String,
}

impl AcceptedLeg {
    pub fn receipt(&self) -> Value {
        json!({"trade_id": self.trade_id, "leg_id": self.leg_id, "status": "RECEIVED"})
    }
}

/// An `Idempotency-Key` and the digest of the request it came with.
pub struct Idempotency {
    pub key: String,
    pub digest: String,
}

/// One request's legs, to be recorded all or nothing.
pub struct Request {
    pub sender: ParticipantId,
    pub legs: Vec<AcceptedLeg>,
    pub idempotency: Option<Idempotency>,
    /// The answer to give once committed (and to store under the idempotency key).
    pub response: Value,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The shared transaction failed: nothing of any request in it was recorded.
    #[error("the safe-store could not commit: {detail}")]
    Store { transient: bool, detail: String },
    #[error("ingress is shutting down")]
    Closed,
}

impl From<sqlx::Error> for CommitError {
    fn from(error: sqlx::Error) -> Self {
        CommitError::Store {
            transient: keel_safestore::is_transient(&error),
            detail: error.to_string(),
        }
    }
}

/// How requests are grouped.
#[derive(Debug, Clone, Copy)]
pub struct GroupOptions {
    /// Transactions in progress at once; while they commit, the next group gathers.
    pub committers: usize,
    /// Legs in one transaction at most (a single request larger than this still commits alone).
    pub max_legs: usize,
}

type Job = (Request, oneshot::Sender<Result<Value, CommitError>>);

/// An idempotency key already stored: the digest of its request and the answer it was given.
type StoredKey = (String, Option<Json<Value>>);

/// Hands requests to the committers.
#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<Job>,
}

impl GroupCommitter {
    /// Starts `options.committers` committers on `pool`; they stop when every handle is dropped.
    pub fn start(pool: PgPool, durability: Durability, options: GroupOptions) -> Self {
        let (queue, jobs) = mpsc::channel::<Job>(4096);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..options.committers.max(1) {
            tokio::spawn(committer(
                jobs.clone(),
                pool.clone(),
                durability,
                options.max_legs.max(1),
            ));
        }
        Self { queue }
    }

    /// Records `request` in the next group commit; returns its answer once that commit is durable
    /// (or the answer first given to a replayed idempotency key).
    pub async fn commit(&self, request: Request) -> Result<Value, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| CommitError::Closed)?;
        answer.await.map_err(|_| CommitError::Closed)?
    }
}

async fn committer(
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    pool: PgPool,
    durability: Durability,
    max_legs: usize,
) {
    loop {
        let group = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut legs = first.0.legs.len();
            let mut group = vec![first];
            while legs < max_legs {
                match jobs.try_recv() {
                    Ok(job) => {
                        legs += job.0.legs.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let (requests, replies): (Vec<Request>, Vec<_>) = group.into_iter().unzip();
        let started = tokio::time::Instant::now();
        let outcomes = match commit_group(&pool, durability, &requests).await {
            Ok(outcomes) => outcomes,
            Err(error) => vec![Err(CommitError::from(error)); requests.len()],
        };
        metrics::histogram!("keel_ingress_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("keel_ingress_commit_requests").record(requests.len() as f64);
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

/// What became of one request in a group, as it is worked out.
#[derive(Debug, Clone)]
enum Fate {
    Pending,
    /// A replayed idempotency key: this answer, and nothing recorded.
    Replay(Value),
    /// Same key and request as an earlier request of this group: its answer.
    SameAs(usize),
    Refused(CommitError),
}

/// Records a group of requests in one transaction; returns each request's outcome. An `Err` is the
/// transaction's own failure (nothing recorded).
async fn commit_group(
    pool: &PgPool,
    durability: Durability,
    requests: &[Request],
) -> Result<Vec<Result<Value, CommitError>>, sqlx::Error> {
    let mut fates = vec![Fate::Pending; requests.len()];
    let mut tx = pool.begin().await?;
    durability.apply(&mut tx).await?;

    // Idempotency keys: the first request to claim a key owns it; a later one in the group with the
    // same key gets the owner's answer (same request) or a conflict; a key already stored replays.
    let keyed: Vec<(usize, &str, &Idempotency)> = requests
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.idempotency.as_ref().map(|k| (i, r.sender.as_str(), k)))
        .collect();
    let mut owners: HashMap<(&str, &str), usize> = HashMap::new();
    if !keyed.is_empty() {
        let participants: Vec<&str> = keyed.iter().map(|(_, p, _)| *p).collect();
        let keys: Vec<&str> = keyed.iter().map(|(_, _, k)| k.key.as_str()).collect();
        let digests: Vec<&str> = keyed.iter().map(|(_, _, k)| k.digest.as_str()).collect();
        let claimed: HashSet<(String, String)> = sqlx::query!(
            r#"INSERT INTO ingress.idempotency_keys (participant_id, key, request_digest)
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
               ON CONFLICT DO NOTHING RETURNING participant_id, key"#,
            &participants as &[&str],
            &keys as &[&str],
            &digests as &[&str]
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.participant_id, row.key))
        .collect();
        let mut stored_keys = Vec::new();
        for (index, participant, key) in &keyed {
            let id = (*participant, key.key.as_str());
            if let Some(owner) = owners.get(&id) {
                fates[*index] = if requests[*owner]
                    .idempotency
                    .as_ref()
                    .is_some_and(|k| k.digest == key.digest)
                {
                    Fate::SameAs(*owner)
                } else {
                    Fate::Refused(key_reused(&key.key))
                };
            } else if claimed.contains(&(id.0.to_owned(), id.1.to_owned())) {
                owners.insert(id, *index);
            } else {
                stored_keys.push(*index);
            }
        }
        if !stored_keys.is_empty() {
            let participants: Vec<&str> = stored_keys
                .iter()
                .map(|i| requests[*i].sender.as_str())
                .collect();
            let keys: Vec<&str> = stored_keys
                .iter()
                .map(|i| {
                    requests[*i]
                        .idempotency
                        .as_ref()
                        .map_or("", |k| k.key.as_str())
                })
                .collect();
            let stored: HashMap<(String, String), StoredKey> = sqlx::query!(
                r#"SELECT k.participant_id, k.key, k.request_digest, k.response AS "response: Json<Value>"
                   FROM ingress.idempotency_keys k
                   JOIN UNNEST($1::text[], $2::text[]) AS u(p, k2)
                     ON k.participant_id = u.p AND k.key = u.k2"#,
                &participants as &[&str],
                &keys as &[&str]
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| ((row.participant_id, row.key), (row.request_digest, row.response)))
            .collect();
            for index in stored_keys {
                let request = &requests[index];
                let key = request.idempotency.as_ref().expect("keyed");
                let id = (request.sender.to_string(), key.key.clone());
                fates[index] = match stored.get(&id) {
                    Some((digest, Some(Json(answer)))) if *digest == key.digest => {
                        Fate::Replay(answer.clone())
                    }
                    _ => Fate::Refused(key_reused(&key.key)),
                };
            }
        }
    }

    // Legs: each distinct leg once, in leg order (so two groups meeting on the same legs take their
    // locks in one order). A leg already recorded, or recorded earlier in this group, with other
    // content refuses the request that brought it.
    let mut first_seen: HashMap<Uuid, (usize, &AcceptedLeg)> = HashMap::new();
    for (index, request) in requests.iter().enumerate() {
        if !matches!(fates[index], Fate::Pending) {
            continue;
        }
        for leg in &request.legs {
            match first_seen.get(&leg.leg_id.0) {
                Some((_, first)) if first.digest != leg.digest => {
                    fates[index] = Fate::Refused(version_conflict(leg));
                }
                Some(_) => {}
                None => {
                    first_seen.insert(leg.leg_id.0, (index, leg));
                }
            }
        }
    }
    let mut distinct: Vec<(usize, &AcceptedLeg)> = first_seen.values().copied().collect();
    distinct.sort_by_key(|(_, leg)| leg.leg_id.0);
    let received_at = Utc::now();
    let inserted: HashSet<Uuid> = if distinct.is_empty() {
        HashSet::new()
    } else {
        let text = |field: fn(&AcceptedLeg) -> &str| -> Vec<&str> {
            distinct.iter().map(|(_, l)| field(l)).collect()
        };
        let leg_ids: Vec<Uuid> = distinct.iter().map(|(_, l)| l.leg_id.0).collect();
        let trade_ids: Vec<Uuid> = distinct.iter().map(|(_, l)| l.trade_id.0).collect();
        let senders: Vec<&str> = distinct
            .iter()
            .map(|(i, _)| requests[*i].sender.as_str())
            .collect();
        let versions: Vec<i32> = distinct
            .iter()
            .map(|(_, l)| l.block.version.get() as i32)
            .collect();
        let blocks: Vec<Value> = distinct.iter().map(|(_, l)| l.canonical.clone()).collect();
        sqlx::query_scalar!(
            "INSERT INTO ingress.submissions (leg_id, trade_id, sender, trade_ref, version, im_id, broker_id, block, digest, received_at)
             SELECT l.*, $10 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::jsonb[], $9::text[])
                 AS l(leg_id, trade_id, sender, trade_ref, version, im_id, broker_id, block, digest)
             ON CONFLICT (leg_id) DO NOTHING
             RETURNING leg_id",
            &leg_ids,
            &trade_ids,
            &senders as &[&str],
            &text(|l| l.block.trade_ref.as_str()) as &[&str],
            &versions,
            &text(|l| l.block.im_id.as_str()) as &[&str],
            &text(|l| l.block.broker_id.as_str()) as &[&str],
            &blocks,
            &text(|l| l.digest.as_str()) as &[&str],
            received_at
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect()
    };
    let earlier: Vec<Uuid> = distinct
        .iter()
        .map(|(_, l)| l.leg_id.0)
        .filter(|id| !inserted.contains(id))
        .collect();
    if !earlier.is_empty() {
        let recorded: HashMap<Uuid, String> = sqlx::query!(
            "SELECT leg_id, digest FROM ingress.submissions WHERE leg_id = ANY($1)",
            &earlier
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.leg_id, row.digest))
        .collect();
        for (index, request) in requests.iter().enumerate() {
            if !matches!(fates[index], Fate::Pending) {
                continue;
            }
            if let Some(leg) = request.legs.iter().find(|leg| {
                recorded
                    .get(&leg.leg_id.0)
                    .is_some_and(|digest| *digest != leg.digest)
            }) {
                fates[index] = Fate::Refused(version_conflict(leg));
            }
        }
    }
    // A request that follows a refused owner is refused with it.
    for index in 0..fates.len() {
        if let Fate::SameAs(owner) = fates[index] {
            if let Fate::Refused(error) = &fates[owner] {
                fates[index] = Fate::Refused(error.clone());
            }
        }
    }

    // Take out what refused requests recorded, unless an accepted request brought the same leg.
    let kept: HashSet<Uuid> = requests
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(fates[*i], Fate::Pending))
        .flat_map(|(_, r)| r.legs.iter().map(|l| l.leg_id.0))
        .collect();
    let withdrawn: Vec<Uuid> = inserted
        .iter()
        .filter(|id| !kept.contains(id))
        .copied()
        .collect();
    if !withdrawn.is_empty() {
        sqlx::query!(
            "DELETE FROM ingress.submissions WHERE leg_id = ANY($1)",
            &withdrawn
        )
        .execute(&mut *tx)
        .await?;
    }
    let released: Vec<(&str, &str)> = owners
        .iter()
        .filter(|(_, owner)| matches!(fates[**owner], Fate::Refused(_)))
        .map(|(id, _)| *id)
        .collect();
    if !released.is_empty() {
        let participants: Vec<&str> = released.iter().map(|(p, _)| *p).collect();
        let keys: Vec<&str> = released.iter().map(|(_, k)| *k).collect();
        sqlx::query!(
            "DELETE FROM ingress.idempotency_keys k USING UNNEST($1::text[], $2::text[]) AS u(p, k2)
             WHERE k.participant_id = u.p AND k.key = u.k2",
            &participants as &[&str],
            &keys as &[&str]
        )
        .execute(&mut *tx)
        .await?;
    }

    // What is accepted goes out through the outbox, and its answer is kept under its key.
    let outgoing: Vec<Outgoing> = distinct
        .iter()
        .filter(|(_, l)| inserted.contains(&l.leg_id.0) && kept.contains(&l.leg_id.0))
        .map(|(i, l)| {
            Outgoing::of(&Submission::Leg {
                leg_id: l.leg_id,
                trade_id: l.trade_id,
                match_key: l.block.match_key(),
                sender: requests[*i].sender.clone(),
                received_at,
                block: l.canonical.clone(),
            })
            .continuing(leg_trace(l))
        })
        .collect();
    keel_safestore::enqueue(&mut tx, &outgoing).await?;
    let answered: Vec<(&str, &str, &Value)> = owners
        .iter()
        .filter(|(_, owner)| matches!(fates[**owner], Fate::Pending))
        .map(|((p, k), owner)| (*p, *k, &requests[*owner].response))
        .collect();
    if !answered.is_empty() {
        let participants: Vec<&str> = answered.iter().map(|(p, _, _)| *p).collect();
        let keys: Vec<&str> = answered.iter().map(|(_, k, _)| *k).collect();
        let responses: Vec<Value> = answered.iter().map(|(_, _, r)| (*r).clone()).collect();
        sqlx::query!(
            "UPDATE ingress.idempotency_keys k SET response = u.r
             FROM UNNEST($1::text[], $2::text[], $3::jsonb[]) AS u(p, k2, r)
             WHERE k.participant_id = u.p AND k.key = u.k2",
            &participants as &[&str],
            &keys as &[&str],
            &responses
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("keel_ingress_legs_accepted_total").increment(outgoing.len() as u64);
    metrics::histogram!("keel_ingress_commit_legs").record(outgoing.len() as f64);

    Ok(fates
        .iter()
        .enumerate()
        .map(|(index, fate)| match fate {
            Fate::Pending => Ok(requests[index].response.clone()),
            Fate::Replay(answer) => Ok(answer.clone()),
            Fate::SameAs(owner) => Ok(requests[*owner].response.clone()),
            Fate::Refused(error) => Err(error.clone()),
        })
        .collect())
}

/// The leg's span in its trade's trace (the trade id is the trace id), which the rest of the
/// pipeline continues; none when traces are not exported.
fn leg_trace(leg: &AcceptedLeg) -> Option<String> {
    if !trace::exported() {
        return None;
    }
    let span =
        tracing::info_span!("accept leg", trade_id = %leg.trade_id.0, leg_id = %leg.leg_id.0);
    trace::within_trade(&span, leg.trade_id.0);
    trace::traceparent(&span)
}

fn key_reused(key: &str) -> CommitError {
    CommitError::Conflict {
        code: "idempotency_key_reused",
        message: format!("Idempotency-Key {key:?} was already used for a different request"),
    }
}

fn version_conflict(leg: &AcceptedLeg) -> CommitError {
    CommitError::Conflict {
        code: "leg_version_conflict",
        message: format!(
            "trade_ref {} version {} was already submitted with different content; amend with a higher version",
            leg.block.trade_ref,
            leg.block.version.get()
        ),
    }
}
