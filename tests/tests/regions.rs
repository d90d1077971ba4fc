//! Two regions (DESIGN section 5): routing controls read through the real ARC SDK from the local ARC
//! cluster, safety rules, fencing, database standby and promotion, and inter-application topics
//! produced to the receiving application's active region.

use std::sync::Arc;
use std::time::Duration;

use keel_arc::ArcError;
use keel_generator::DriverOptions;
use keel_routing::GENERATOR;
use keel_system_tests::{
    connect, control_name, count_in, participants, service_names, settling_block, stream_pairs,
    unpublished_sql, wait_replayed, App, Client, Gate, Stack, StackOptions, EAST, WEST,
};
use keel_topology::services_of;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

async fn tokens(stack: &Stack) -> [String; 2] {
    [stack.token("im-alpha").await, stack.token("br-north").await]
}

#[tokio::test]
async fn arc_client_works_with_all_but_one_endpoint_down_and_state_is_shared() {
    let mut stack = Stack::start(
        "arc_endpoints",
        StackOptions {
            arc_endpoints: 3,
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    let arc = stack.arc_client();
    assert!(arc.get("generator").await.unwrap());

    // Two of three endpoints down: the client moves on to the one that answers.
    stack.kill_arc(0);
    stack.kill_arc(1);
    arc.set(&[("generator", false)], &[]).await.unwrap();
    assert!(!arc.get("generator").await.unwrap());
    let states = arc.states().await.unwrap();
    assert!(states.allows(App::TradeMatching, Gate::Processing, EAST));

    // The state is the cluster's, on disk: another endpoint, alone, answers the same.
    stack.start_arc(0).await.unwrap();
    stack.kill_arc(2);
    assert!(!arc.get("generator").await.unwrap());
    arc.set(&[("generator", true)], &[]).await.unwrap();

    // The real error types come back through the SDK.
    match arc.get("no-such-control").await {
        Err(ArcError::UnknownControl(_)) => {}
        other => panic!("expected an unknown control, got {other:?}"),
    }
    match arc
        .set(&[("generator", true)], &["no-such-rule".to_owned()])
        .await
    {
        Err(ArcError::Rejected { code, .. }) => assert_eq!(code, "ValidationException"),
        other => panic!("expected a ValidationException, got {other:?}"),
    }

    // Every endpoint down: an error naming each one, not a hang.
    stack.kill_arc(0);
    match arc.states().await {
        Err(ArcError::Unreachable(failures)) => assert_eq!(failures.len(), 3, "{failures:?}"),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn services_fence_themselves_when_the_controls_cannot_be_read() {
    let fence_after = Duration::from_millis(1_500);
    let mut stack = Stack::start(
        "fencing",
        StackOptions {
            fence_after_ms: fence_after.as_millis() as u64,
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    let [im, _] = tokens(&stack).await;
    let (status, body) = stack
        .client()
        .submit(&im, &settling_block("FENCE-1"))
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");

    let cut = tokio::time::Instant::now();
    stack.kill_arc(0);
    // Every stage service reports itself fenced, and ingress refuses traffic, within the bound
    // (plus one poll and the time to notice).
    let deadline = cut + fence_after + Duration::from_secs(3);
    for service in ["ingestion", "matching", "notification", "settlement"] {
        loop {
            let (code, body) = stack.readiness_in(EAST, service).await.unwrap();
            if code == 503 && body["notes"]["processing"] == "fenced" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service} not fenced: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (status, body) = stack
        .client()
        .submit(&im, &settling_block("FENCE-2"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "region_not_active");
    println!(
        "fenced {:?} after the ARC cluster was cut off (bound {fence_after:?})",
        cut.elapsed()
    );
    assert!(cut.elapsed() >= fence_after, "fenced before the bound");
    let accepted = stack
        .count("SELECT count(*) FROM ingress.submissions")
        .await;
    assert_eq!(accepted, 1, "a fenced ingress accepted a submission");

    // Controls readable again: everything resumes, and the fenced-out submission can be retried.
    stack.start_arc(0).await.unwrap();
    for service in service_names() {
        stack.wait_ready(service, WAIT).await.unwrap();
    }
    let (status, body) = stack
        .client()
        .submit(&im, &settling_block("FENCE-2"))
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    stack
        .wait_for_count("SELECT count(*) FROM ingestion.inbox", 2, WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn manual_handover_moves_processing_between_regions_with_nothing_lost() {
    let stack = Stack::start(
        "handover",
        StackOptions {
            replicated: true,
            ..StackOptions::two_regions()
        },
    )
    .await
    .unwrap();
    let arc = stack.arc_client();
    let [im, broker] = tokens(&stack).await;
    let tm_east = connect(&stack.regions[EAST].databases[&App::TradeMatching])
        .await
        .unwrap();
    let tm_west = connect(&stack.regions[WEST].databases[&App::TradeMatching])
        .await
        .unwrap();
    let st_east = connect(&stack.regions[EAST].databases[&App::Settlement])
        .await
        .unwrap();

    // The standby region answers 503 with the active region's URL.
    let (status, body) = stack
        .client_in(WEST)
        .submit(&im, &settling_block("WEST-0"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["active_url"],
        stack.regions[EAST].ingress_url.as_str()
    );

    // Split brain: a second region processing trade matching is refused, alone or in a batch.
    let west_processing = control_name(App::TradeMatching, Gate::Processing, WEST);
    match arc.set(&[(west_processing.as_str(), true)], &[]).await {
        Err(ArcError::Refused(message)) => {
            assert!(
                message.contains("trade-matching-processing-in-one-region"),
                "{message}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let refused = stack.keelctl(&["controls", "set", &format!("{west_processing}=On")]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        arc.states().await.unwrap().active_region(
            App::TradeMatching,
            Gate::Processing,
            &[EAST.into(), WEST.into()]
        ) == Some(EAST)
    );

    // Before: trades settle in us-east-1.
    let before = 20;
    stream_pairs(
        stack.client(),
        [im.clone(), broker.clone()],
        "BEFORE".into(),
        before,
        10,
        Duration::ZERO,
        settling_block,
    )
    .await;
    stack
        .wait_for_count_in(
            &tm_east,
            "SELECT count(*) FROM matching.trades WHERE status = 'SETTLED'",
            before as i64,
            WAIT,
        )
        .await
        .unwrap();
    stack
        .wait_for_count_in(
            &tm_east,
            "SELECT count(*) FROM notification.notifications",
            before as i64 * 10,
            WAIT,
        )
        .await
        .unwrap();

    // Handover by hand: traffic off, drain, processing off, standby caught up, promote, on in west.
    let set = |changes: Vec<(String, bool)>| {
        let arc = &arc;
        async move {
            let changes: Vec<(&str, bool)> =
                changes.iter().map(|(n, on)| (n.as_str(), *on)).collect();
            arc.set(&changes, &[]).await.unwrap();
        }
    };
    set(vec![(
        control_name(App::TradeMatching, Gate::Traffic, EAST),
        false,
    )])
    .await;
    // A control's change reaches a service at its next poll: wait until us-east-1's ingress is seen
    // refusing, and its stages are seen standing by, before relying on either.
    let deadline = tokio::time::Instant::now() + WAIT;
    while stack
        .client()
        .get("/v1/notifications", &im)
        .await
        .unwrap()
        .0
        != 503
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "us-east-1 ingress still takes traffic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unpublished = format!(
        "SELECT ({}) + ({}) + ({}) + ({})",
        unpublished_sql("ingress", "tm.submissions"),
        unpublished_sql("ingestion", "tm.trades"),
        unpublished_sql("matching", "tm.events"),
        unpublished_sql("matching", "st.instructions"),
    );
    stack
        .wait_for_count_in(&tm_east, &unpublished, 0, WAIT)
        .await
        .unwrap();
    set(vec![(
        control_name(App::TradeMatching, Gate::Processing, EAST),
        false,
    )])
    .await;
    for service in services_of(App::TradeMatching).map(|s| s.name) {
        loop {
            let (_, body) = stack.readiness_in(EAST, service).await.unwrap();
            if body["notes"]["processing"]
                .as_str()
                .unwrap_or("")
                .starts_with("standby")
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service} still processing: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_replayed(&tm_east, &tm_west, WAIT).await.unwrap();
    stack.promote(App::TradeMatching, WEST).unwrap();
    set(vec![
        (
            control_name(App::TradeMatching, Gate::Processing, WEST),
            true,
        ),
        (control_name(App::TradeMatching, Gate::Traffic, WEST), true),
    ])
    .await;
    for service in services_of(App::TradeMatching).map(|s| s.name) {
        stack.wait_ready_in(WEST, service, WAIT).await.unwrap();
    }

    // us-east-1 now sends clients to us-west-2 (once its next poll of the controls saw the change),
    // which takes the traffic.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = stack
            .client()
            .submit(&im, &settling_block("EAST-1"))
            .await
            .unwrap();
        assert_eq!(status, 503, "{body}");
        if body["error"]["active_url"] == stack.regions[WEST].ingress_url.as_str() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = 20;
    let west_client = stack.client_in(WEST);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The first submissions may meet the new primary's first connections (503), or its
        // consumers catching up with what the handover left them (429, as any client is told to
        // retry after); nothing else is retried.
        let (status, body) = west_client
            .submit_batch(&im, &[settling_block("PROBE-0")])
            .await
            .unwrap();
        if status == 202 {
            west_client
                .submit_batch(&broker, &[settling_block("PROBE-0")])
                .await
                .unwrap();
            break;
        }
        assert!(
            (status == 503 || status == 429) && tokio::time::Instant::now() < deadline,
            "{status} {body}"
        );
        let wait = body["error"]["retry_after_seconds"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(200).max(Duration::from_secs(wait))).await;
    }
    stream_pairs(
        west_client,
        [im.clone(), broker.clone()],
        "AFTER".into(),
        after,
        10,
        Duration::ZERO,
        settling_block,
    )
    .await;

    // Trade matching in us-west-2 sends instructions to settlement's region (us-east-1), whose
    // results come back to us-west-2's Kafka: every trade settles, nothing lost or repeated.
    let total = (before + after + 1) as i64;
    stack
        .wait_for_count_in(
            &tm_west,
            "SELECT count(*) FROM matching.trades WHERE status = 'SETTLED'",
            total,
            WAIT,
        )
        .await
        .unwrap();
    stack
        .wait_for_count_in(
            &tm_west,
            "SELECT count(*) FROM notification.notifications",
            total * 10,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        count_in(&tm_west, "SELECT count(*) FROM ingress.submissions").await,
        total * 2
    );
    assert_eq!(
        count_in(&tm_west, "SELECT count(*) FROM matching.status_history").await,
        total * 5
    );
    assert_eq!(
        count_in(&tm_west, "SELECT count(*) FROM (SELECT DISTINCT trade_id, body->>'history_seq', recipient FROM notification.notifications) d").await,
        total * 10
    );
    assert_eq!(
        count_in(
            &st_east,
            "SELECT count(*) FROM settlement.instructions WHERE status = 'SETTLED'"
        )
        .await,
        total * 2
    );
    assert_eq!(
        count_in(&st_east, "SELECT count(*) FROM settlement.inbox").await,
        total,
        "one instruction message per trade"
    );
    // The old primary took no writes after its processing control went Off.
    assert_eq!(
        count_in(&tm_east, "SELECT count(*) FROM ingress.submissions").await,
        before as i64 * 2
    );
    let verify = stack.keelctl(&["ledger", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

#[tokio::test]
async fn synchronous_replication_loses_no_acknowledged_submission_when_the_primary_dies() {
    let seed = keel_system_tests::seed("synchronous_replication");
    let stack = Stack::start(
        "sync_replication",
        StackOptions {
            replicated: true,
            extra_env: vec![("KEEL_REPLICATION__SYNCHRONOUS".into(), "true".into())],
            ..StackOptions::two_regions()
        },
    )
    .await
    .unwrap();
    let [im, _] = tokens(&stack).await;
    let kill_after = Duration::from_millis(500 + seed % 1500);

    // Four clients submit one leg per request as fast as they can; each records what was acknowledged.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for worker in 0..4 {
        let client = stack.client();
        let token = im.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.is_cancelled() {
                    break;
                }
                let trade_ref = format!("SYNC-{worker}-{i:06}");
                match client.submit(&token, &settling_block(&trade_ref)).await {
                    Ok((202, body)) => acked.push(body["leg_id"].as_str().unwrap().to_owned()),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(kill_after).await;
    stack.kill_database(App::TradeMatching, EAST).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut acked = Vec::new();
    for client in clients {
        acked.extend(client.await.unwrap());
    }
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged before the primary died"
    );

    // What the standby in us-west-2 has is what a failover would serve: every acknowledged leg.
    let standby = connect(&stack.regions[WEST].databases[&App::TradeMatching])
        .await
        .unwrap();
    let present: Vec<String> = sqlx::query_scalar("SELECT leg_id::text FROM ingress.submissions")
        .fetch_all(&standby)
        .await
        .unwrap();
    let present: std::collections::HashSet<String> = present.into_iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|leg| !present.contains(*leg)).collect();
    println!(
        "primary killed after {kill_after:?}: {} acknowledged, {} on the standby, {} missing",
        acked.len(),
        present.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but not on the standby: {missing:?}"
    );
}

const SUBMISSIONS: &str = "SELECT count(*) FROM ingress.submissions";

#[tokio::test]
async fn the_generator_pauses_on_its_control_and_follows_the_active_region() {
    let seed = keel_system_tests::seed("generator_follows");
    let stack = Stack::start("generator_follows", StackOptions::two_regions())
        .await
        .unwrap();
    let arc = stack.arc_client();
    let (east, west) = (
        stack.regions[EAST].ingress_url.clone(),
        stack.regions[WEST].ingress_url.clone(),
    );
    let stop = CancellationToken::new();
    let control = keel_arc::watch(
        Arc::new(stack.arc_client()),
        &stack.control_config(),
        stop.clone(),
    );
    // It starts at us-west-2, which does not take traffic and names us-east-1 instead.
    let client = Client::with_ingresses(&[&west, &east]);
    let options = DriverOptions {
        batch: 5,
        control: Some(control),
        ..DriverOptions::at_rate(40.0, seed, "GENFOLLOW")
    };
    let generator = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move { keel_generator::run(client, &participants(), options, stop).await }
    });
    stack
        .wait_for_at_least(SUBMISSIONS, 20, WAIT)
        .await
        .unwrap();
    assert_eq!(client.base(), east);

    // Off: nothing more is submitted once the change has been read (one poll) and the requests in
    // flight have been answered. A request generated before may still be retried: after a 429 the
    // generator waits the Retry-After (1 s) plus up to as much again. So the count is read once it
    // has stood still for longer than that wait, three seconds (bounded), on a loaded machine
    // later than on an idle one.
    arc.set(&[(GENERATOR, false)], &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut paused_at = stack.count(SUBMISSIONS).await;
    let mut still = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stack.count(SUBMISSIONS).await;
        if now == paused_at {
            still += 1;
            if still == 3 {
                break;
            }
        } else {
            (paused_at, still) = (now, 0);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.count(SUBMISSIONS).await,
        paused_at,
        "legs were submitted while the generator control was Off"
    );
    arc.set(&[(GENERATOR, true)], &[]).await.unwrap();
    stack
        .wait_for_at_least(SUBMISSIONS, paused_at + 20, WAIT)
        .await
        .unwrap();

    // Trade matching's traffic moves to us-west-2 (the stack's regions share one database here).
    // While no region takes traffic the generator retries; then it follows the refusal to us-west-2.
    let control = |gate, region| control_name(App::TradeMatching, gate, region);
    let (east_traffic, east_processing) = (
        control(Gate::Traffic, EAST),
        control(Gate::Processing, EAST),
    );
    let (west_traffic, west_processing) = (
        control(Gate::Traffic, WEST),
        control(Gate::Processing, WEST),
    );
    arc.set(&[(east_traffic.as_str(), false)], &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    arc.set(&[(east_processing.as_str(), false)], &[])
        .await
        .unwrap();
    arc.set(
        &[
            (west_processing.as_str(), true),
            (west_traffic.as_str(), true),
        ],
        &[],
    )
    .await
    .unwrap();
    let moved_at = stack.count(SUBMISSIONS).await;
    stack
        .wait_for_at_least(SUBMISSIONS, moved_at + 20, WAIT)
        .await
        .unwrap();
    assert_eq!(client.base(), west);
    stop.cancel();
    let report = generator.await.unwrap().unwrap();
    println!(
        "generator: {} legs accepted, {} refused (invalid), {} failed; {} redirects, {} retries, paused {:?}",
        report.legs_accepted,
        report.legs_refused,
        report.legs_failed,
        report.redirects,
        report.retries,
        report.paused
    );
    assert_eq!(report.legs_failed, 0, "see the generator line above");
    assert!(report.redirects >= 2, "see the generator line above");
    assert!(
        report.paused >= Duration::from_millis(1_500),
        "see the generator line above"
    );
    assert_eq!(
        stack.count(SUBMISSIONS).await,
        report.legs_accepted as i64,
        "every acknowledged leg is recorded once"
    );
}
