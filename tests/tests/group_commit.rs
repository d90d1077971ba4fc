//! Group commit (DESIGN section 4): many clients each sending one leg share commits, and each 202
//! comes only after the commit that holds its leg. Proven the hard way: trade matching's database
//! is killed with SIGKILL while submissions are still arriving, started again, and every leg that
//! was acknowledged is there. The legs came in fewer transactions than requests.

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_system_tests::{sample_block, App, Stack, StackOptions, EAST};
use tokio::sync::Mutex;

const REQUESTS: usize = 400;
/// Once this many answers are in, the database is killed.
const KILL_AFTER_ANSWERS: usize = 150;

#[tokio::test]
async fn every_acknowledged_leg_survives_a_crash_and_legs_share_commits() {
    let stack = Stack::start(
        "group_commit",
        StackOptions {
            // A cluster of the stack's own, so it can be killed.
            replicated: true,
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    let im = stack.token("im-alpha").await;
    let client = stack.client();
    // Fresh connections per request would serialize on connecting: keep them warm first.
    let (status, body) = client
        .submit(&im, &sample_block("T-GC-WARM"))
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");

    let acknowledged = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let answered = Arc::new(tokio::sync::Notify::new());
    let answers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut requests = Vec::new();
    for i in 0..REQUESTS {
        let (client, im) = (client.clone(), im.clone());
        let (acknowledged, answered, answers) =
            (acknowledged.clone(), answered.clone(), answers.clone());
        requests.push(tokio::spawn(async move {
            let block = sample_block(&format!("T-GC-{i:04}"));
            if let Ok((202, body)) = client.submit(&im, &block).await {
                acknowledged
                    .lock()
                    .await
                    .insert(body["leg_id"].as_str().unwrap().to_owned());
            }
            answers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            answered.notify_one();
        }));
    }
    while answers.load(std::sync::atomic::Ordering::SeqCst) < KILL_AFTER_ANSWERS {
        answered.notified().await;
    }
    stack.kill_database(App::TradeMatching, EAST).unwrap();
    let killed_with = acknowledged.lock().await.len();
    for request in requests {
        request.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    println!(
        "{killed_with} legs acknowledged when the database was killed, {} in all",
        acknowledged.len()
    );
    assert!(
        killed_with >= 100,
        "too few answers before the kill: {killed_with}"
    );

    stack.restart_database(App::TradeMatching, EAST).unwrap();
    let db = keel_system_tests::connect(&stack.database_url)
        .await
        .unwrap();
    let stored: BTreeSet<String> =
        sqlx::query_scalar("SELECT leg_id::text FROM ingress.submissions")
            .fetch_all(&db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    // Each leg's outbox row committed with it.
    let with_outbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingress.submissions s JOIN ingress.outbox o ON o.message_id = s.leg_id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(with_outbox, stored.len() as i64);
    // Legs share transactions: a row's xmin is the transaction that wrote it.
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM ingress.submissions WHERE trade_ref LIKE 'T-GC-0%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let legs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingress.submissions WHERE trade_ref LIKE 'T-GC-0%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    println!("{legs} legs committed in {transactions} transactions");
    assert!(
        transactions < legs,
        "{legs} single-leg requests took {transactions} commits: none was shared"
    );
}
