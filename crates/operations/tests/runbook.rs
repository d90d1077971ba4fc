//! The runbook over the in-memory world: rotation, failover, resumption, refusals and every safety
//! check, with a port failing during each step. Milliseconds each; the failover suite in
//! tests/tests/failover.rs proves the same against the real parts.

use std::sync::{Arc, Mutex};

use keel_operations::fakes::{Role, World, EAST, WEST};
use keel_operations::ports::ControlsError;
use keel_operations::{MoveRequest, Progress, Refusal, RunbookError, StepError};
use keel_rotation::{Mode, Step, StepState};
use keel_routing::{App, Gate};

const HOLDER: &str = "test";

fn request(app: App, mode: Mode, to: &str) -> MoveRequest {
    MoveRequest {
        app,
        mode,
        to: to.to_owned(),
        from: None,
    }
}

fn quiet(_: Progress<'_>) {}

/// Opens a new run moving `app` to `to` and carries it out, quietly.
async fn move_once(
    runbook: &keel_operations::Runbook,
    app: App,
    mode: Mode,
    to: &str,
) -> Result<keel_operations::Report, RunbookError> {
    let opened = runbook.open(&request(app, mode, to)).await.unwrap();
    runbook.run(opened, HOLDER, &quiet).await
}

/// What a world looks like once `app` has moved to `to`: processing and traffic there and nowhere
/// else, its database there the primary.
fn assert_moved(world: &World, app: App, from: &str, to: &str) {
    for gate in Gate::ALL {
        assert!(world.control(app, gate, to), "{app} {gate:?} On in {to}");
        assert!(
            !world.control(app, gate, from),
            "{app} {gate:?} Off in {from}"
        );
    }
    assert_eq!(world.database(app, to).role, Role::Primary);
    assert_eq!(world.lock(app), None, "the lock is released");
}

#[tokio::test]
async fn a_planned_rotation_moves_the_application_and_reprotects_the_old_primary() {
    let world = World::two_regions(100);
    let runbook = world.runbook();
    let opened = runbook
        .open(&request(App::TradeMatching, Mode::Planned, WEST))
        .await
        .unwrap();
    assert!(!opened.resumed);
    assert_eq!(opened.plan().from, EAST, "the source is where it processes");
    let report = runbook.run(opened, HOLDER, &quiet).await.unwrap();

    assert_moved(&world, App::TradeMatching, EAST, WEST);
    assert_eq!(
        world.database(App::TradeMatching, EAST).role,
        Role::StandbyOf(WEST.into()),
        "the old primary streams from the new one"
    );
    // Settlement did not move.
    assert!(world.control(App::Settlement, Gate::Processing, EAST));
    assert!(report.ok);
    assert_eq!(report.rpo.as_ref().unwrap().acknowledged_missing, Some(0));
    assert!(report.rto_ms.unwrap() > 0);
    assert_eq!(report.steps.len(), 11);
    assert!(report.steps.iter().all(|s| s.state == StepState::Done));
    assert!(!report.hops.is_empty(), "the reconciliation is reported");
    // The source is stopped before the target is promoted: nothing writes two primaries.
    let log = world.log();
    let at = |entry: &str| log.iter().position(|l| l == entry).unwrap();
    assert!(at("stop trade-matching us-east-1") < at("promote trade-matching us-west-2"));
}

#[tokio::test]
async fn a_failover_out_of_a_lost_region_counts_what_it_cannot_and_never_touches_the_source() {
    let world = World::two_regions(100);
    world.lose_region(EAST);
    let runbook = world.runbook();
    for app in [App::TradeMatching, App::Settlement] {
        let report = move_once(&runbook, app, Mode::Unplanned, WEST)
            .await
            .unwrap();
        assert_moved(&world, app, EAST, WEST);
        let rpo = report.rpo.unwrap();
        assert_eq!(
            rpo.acknowledged_missing, None,
            "the lost source cannot be counted"
        );
        assert!(rpo.how.contains("does not answer"), "{}", rpo.how);
        // The lost primary was not stopped (it could not be), and is still a primary: re-protect
        // rebuilds it once the region is back.
        assert_eq!(world.database(app, EAST).role, Role::Primary);
    }
    assert!(!world.log().iter().any(|l| l.starts_with("stop")));

    world.restore_region(EAST);
    for app in [App::TradeMatching, App::Settlement] {
        let seen = runbook.reprotect(app, None).await.unwrap();
        assert!(seen.contains("streaming"), "{seen}");
        assert_eq!(world.database(app, EAST).role, Role::StandbyOf(WEST.into()));
        assert_eq!(world.lock(app), None);
    }
}

#[tokio::test]
async fn a_failover_whose_source_still_answers_counts_the_acknowledged_records_the_target_lacks() {
    let world = World::two_regions(100);
    world.change_database(App::TradeMatching, WEST, |db| db.acknowledged = 97);
    let runbook = world.runbook();
    let report = move_once(&runbook, App::TradeMatching, Mode::Unplanned, WEST)
        .await
        .unwrap();
    assert_eq!(report.rpo.unwrap().acknowledged_missing, Some(3));
    assert!(
        !world.database(App::TradeMatching, EAST).running,
        "fenced by stopping"
    );
}

/// Makes every port fail while `step` runs, from its start.
fn outage_during(world: &Arc<World>, step: Step) -> impl Fn(Progress<'_>) + Send + Sync {
    let world = world.clone();
    move |progress| {
        if let Progress::Step { step: now, .. } = progress {
            if now == step {
                world.set_outage(true);
            }
        }
    }
}

#[tokio::test]
async fn a_port_failing_in_any_step_stops_the_run_there_and_the_same_command_resumes_it() {
    for mode in [Mode::Planned, Mode::Unplanned] {
        let plan_steps = {
            let world = World::two_regions(10);
            let opened = world
                .runbook()
                .open(&request(App::Settlement, mode, WEST))
                .await
                .unwrap();
            opened.plan().steps.clone()
        };
        for (index, step) in plan_steps.iter().copied().enumerate() {
            let world = World::two_regions(10);
            let runbook = world.runbook();
            let asked = request(App::Settlement, mode, WEST);
            let opened = runbook.open(&asked).await.unwrap();
            let run_id = opened.journal.run_id.clone();
            let stopped = runbook
                .run(opened, HOLDER, &outage_during(&world, step))
                .await;
            world.set_outage(false);
            match stopped {
                Err(RunbookError::Stopped {
                    number,
                    step: at,
                    report,
                    ..
                }) => {
                    assert_eq!((number, at), (index + 1, step), "{mode:?}");
                    assert!(!report.ok);
                    assert_eq!(report.steps.last().unwrap().state, StepState::Failed);
                }
                other => panic!("{mode:?} {step:?}: {other:?}"),
            }
            assert_eq!(
                world.lock(App::Settlement),
                Some(run_id.clone()),
                "the lock is kept"
            );
            let journal = world.journal(&run_id).unwrap();
            assert_eq!(
                journal.records.last().unwrap().step,
                step,
                "{mode:?}: the journal stops in {step:?}"
            );

            // The same command resumes the run at the step it stopped in, and finishes it.
            let resumed = runbook.open(&asked).await.unwrap();
            assert!(resumed.resumed);
            assert_eq!(resumed.journal.run_id, run_id);
            let report = runbook.run(resumed, HOLDER, &quiet).await.unwrap();
            assert!(report.ok, "{mode:?} {step:?}");
            assert_moved(&world, App::Settlement, EAST, WEST);
            let done: Vec<Step> = report
                .steps
                .iter()
                .filter(|s| s.state == StepState::Done)
                .map(|s| s.step)
                .collect();
            assert_eq!(done, plan_steps, "every step done once, in order");
        }
    }
}

#[tokio::test]
async fn a_run_whose_caller_is_killed_mid_step_resumes_that_step() {
    let world = World::two_regions(10);
    let runbook = world.runbook();
    let asked = request(App::TradeMatching, Mode::Planned, WEST);
    let opened = runbook.open(&asked).await.unwrap();
    let run_id = opened.journal.run_id.clone();
    // Killed while it drains: the future is dropped part way.
    world.set_pending(1_000_000);
    let killed = Arc::new(tokio::sync::Notify::new());
    let progress = {
        let killed = killed.clone();
        move |p: Progress<'_>| {
            if matches!(
                p,
                Progress::Done {
                    step: Step::TrafficOff,
                    ..
                }
            ) {
                killed.notify_one();
            }
        }
    };
    tokio::select! {
        _ = runbook.run(opened, HOLDER, &progress) => panic!("the drain cannot finish"),
        _ = killed.notified() => {}
    }
    world.set_pending(0);
    let resumed = runbook.open(&asked).await.unwrap();
    assert!(resumed.resumed);
    let report = runbook.run(resumed, HOLDER, &quiet).await.unwrap();
    assert!(report.ok);
    assert_eq!(report.run_id, run_id);
    assert_moved(&world, App::TradeMatching, EAST, WEST);
}

#[tokio::test]
async fn a_different_run_is_refused_while_one_holds_the_lock() {
    let world = World::two_regions(10);
    world.stop_service(WEST, "settlement");
    let runbook = world.runbook();
    let opened = runbook
        .open(&request(App::Settlement, Mode::Unplanned, WEST))
        .await
        .unwrap();
    let run_id = opened.journal.run_id.clone();
    let stopped = runbook.run(opened, HOLDER, &quiet).await.unwrap_err();
    let RunbookError::Stopped { failure, .. } = &stopped else {
        panic!("{stopped:?}")
    };
    assert!(
        failure
            .to_string()
            .contains("settlement in us-west-2: down"),
        "{failure}"
    );
    for other in [
        request(App::Settlement, Mode::Planned, WEST),
        request(App::Settlement, Mode::Unplanned, EAST),
    ] {
        let refused = runbook.open(&other).await.unwrap_err();
        assert!(
            matches!(refused, RunbookError::Refused(Refusal::DifferentRun(_))),
            "{refused:?}"
        );
        assert!(refused.to_string().contains(&run_id), "{refused}");
    }
    // This run stopped at its preflight and changed nothing: trade matching, first in the
    // topology's order, may go ahead of it (two_runs_stopped_at_their_preflights_… has the rest).
    let tm = runbook
        .open(&request(App::TradeMatching, Mode::Planned, WEST))
        .await
        .unwrap();
    runbook.run(tm, HOLDER, &quiet).await.unwrap();
}

#[tokio::test]
async fn a_run_past_its_preflight_holds_back_the_other_application() {
    let world = World::two_regions(10);
    let runbook = world.runbook();
    let opened = runbook
        .open(&request(App::Settlement, Mode::Planned, WEST))
        .await
        .unwrap();
    let run_id = opened.journal.run_id.clone();
    let stopped = runbook
        .run(opened, HOLDER, &outage_during(&world, Step::Drain))
        .await;
    world.set_outage(false);
    assert!(stopped.is_err());
    let tm = runbook
        .open(&request(App::TradeMatching, Mode::Planned, WEST))
        .await
        .unwrap();
    let refused = runbook.run(tm, HOLDER, &quiet).await.unwrap_err();
    assert!(refused.to_string().contains(&run_id), "{refused}");
}

#[tokio::test]
async fn the_preflight_names_every_problem_and_changes_nothing() {
    let world = World::two_regions(10);
    world.stop_service(WEST, "matching");
    world.stop_service(EAST, "ingress");
    world.change_database(App::TradeMatching, WEST, |db| db.running = false);
    let controls = world.controls();
    let runbook = world.runbook();
    let error = move_once(&runbook, App::TradeMatching, Mode::Planned, WEST)
        .await
        .unwrap_err();
    let RunbookError::Stopped {
        step: Step::Preflight,
        failure,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    let StepError::Problems(problems) = *failure else {
        panic!("{failure:?}")
    };
    let all = problems.join("\n");
    for expected in [
        "matching in us-west-2: down",
        "ingress in us-east-1: down",
        "trade-matching's database in us-west-2",
        "does not stream to",
    ] {
        assert!(all.contains(expected), "{expected} in {all}");
    }
    assert_eq!(world.controls(), controls, "no control changed");
}

#[tokio::test]
async fn a_planned_rotation_needs_the_target_to_be_streaming() {
    let world = World::two_regions(10);
    // A standby rebuilt from somewhere else: the primary does not stream to it.
    world.change_database(App::Settlement, WEST, |db| {
        db.role = Role::StandbyOf("elsewhere".into())
    });
    let runbook = world.runbook();
    let error = move_once(&runbook, App::Settlement, Mode::Planned, WEST)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("re-protect first"), "{error}");
}

#[tokio::test]
async fn gaps_left_missing_after_reconciliation_stop_the_run_before_traffic_returns() {
    let world = World::two_regions(10);
    world.set_missing_after_reconcile(2);
    let runbook = world.runbook();
    let error = move_once(&runbook, App::TradeMatching, Mode::Planned, WEST)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RunbookError::Stopped { step: Step::Reconcile, failure, .. }
                if matches!(failure.as_ref(), StepError::MissingLeft { .. })
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("2 still missing downstream"),
        "{error}"
    );
    assert!(!world.control(App::TradeMatching, Gate::Traffic, WEST));
    assert!(!world.control(App::TradeMatching, Gate::Traffic, EAST));
}

#[tokio::test]
async fn a_verification_problem_stops_the_run_before_traffic_returns() {
    let world = World::two_regions(10);
    world.set_verify_problems(vec!["2 duplicate notification(s)".into()]);
    let runbook = world.runbook();
    let error = move_once(&runbook, App::TradeMatching, Mode::Unplanned, WEST)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RunbookError::Stopped {
                step: Step::Verify,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!world.control(App::TradeMatching, Gate::Traffic, WEST));
}

#[tokio::test]
async fn a_drain_that_never_empties_stops_the_run_with_what_it_saw() {
    let world = World::two_regions(10);
    world.set_pending(1_000_000);
    let runbook = world.runbook();
    let error = move_once(&runbook, App::TradeMatching, Mode::Planned, WEST)
        .await
        .unwrap_err();
    let RunbookError::Stopped {
        step: Step::Drain,
        failure,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    let StepError::NotSeen { last, .. } = failure.as_ref() else {
        panic!("{failure:?}")
    };
    assert!(last.as_deref().unwrap().contains("unpublished"), "{last:?}");
    // The source stays processing (only its traffic is Off) and can be drained later.
    assert!(world.control(App::TradeMatching, Gate::Processing, EAST));
}

#[tokio::test]
async fn plans_that_make_no_sense_are_refused() {
    let world = World::two_regions(10);
    let runbook = world.runbook();
    for (to, expected) in [
        (EAST, "already active in us-east-1"),
        ("mars-1", "unknown region"),
    ] {
        let refused = runbook
            .open(&request(App::TradeMatching, Mode::Planned, to))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, RunbookError::Refused(Refusal::Plan(_))),
            "{refused:?}"
        );
        assert!(refused.to_string().contains(expected), "{refused}");
    }
    for (region, expected) in [
        (Some(EAST), "its database there is the primary"),
        (Some("mars-1"), "unknown region mars-1"),
    ] {
        let refused = runbook
            .reprotect(App::Settlement, region)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains(expected), "{refused}");
    }
    // Unreadable controls: the source cannot be known, and nothing starts.
    world.set_outage(true);
    let refused = runbook
        .open(&request(App::TradeMatching, Mode::Planned, WEST))
        .await
        .unwrap_err();
    assert!(matches!(refused, RunbookError::Controls(_)), "{refused:?}");
}

#[tokio::test]
async fn a_run_that_cannot_write_its_journal_stops_and_resumes_where_the_journal_ends() {
    let world = World::two_regions(10);
    let runbook = world.runbook();
    let asked = request(App::TradeMatching, Mode::Planned, WEST);
    let opened = runbook.open(&asked).await.unwrap();
    let store_fails_at_drain = {
        let world = world.clone();
        move |p: Progress<'_>| {
            if matches!(
                p,
                Progress::Step {
                    step: Step::Drain,
                    ..
                }
            ) {
                world.set_store_down(true);
            }
        }
    };
    let error = runbook
        .run(opened, HOLDER, &store_fails_at_drain)
        .await
        .unwrap_err();
    assert!(matches!(error, RunbookError::Store(_)), "{error:?}");
    world.set_store_down(false);
    let resumed = runbook.open(&asked).await.unwrap();
    assert!(resumed.resumed);
    assert_eq!(
        resumed.journal.next(),
        keel_rotation::Next::Run {
            index: 2,
            step: Step::Drain,
            again: false
        },
        "the drain never started as far as the journal knows"
    );
    assert!(runbook.run(resumed, HOLDER, &quiet).await.unwrap().ok);
    assert_moved(&world, App::TradeMatching, EAST, WEST);
}

#[tokio::test]
async fn the_fake_controls_keep_the_safety_rules_as_the_cluster_does() {
    use keel_operations::ports::RoutingControls;
    let world = World::two_regions(10);
    let on_in_west = keel_routing::control_name(App::TradeMatching, Gate::Processing, WEST);
    let refused = world
        .set(&[(on_in_west.clone(), true)], &[])
        .await
        .unwrap_err();
    assert!(matches!(refused, ControlsError::Refused(_)), "{refused:?}");
    assert!(refused
        .to_string()
        .contains("trade-matching-processing-in-one-region"));
    world
        .set(
            &[(on_in_west, true)],
            &["trade-matching-processing-in-one-region".into()],
        )
        .await
        .expect("a named override breaks the glass");
}

#[tokio::test]
async fn progress_tells_every_step_as_it_starts_and_ends() {
    let world = World::two_regions(10);
    let runbook = world.runbook();
    let opened = runbook
        .open(&request(App::Settlement, Mode::Planned, WEST))
        .await
        .unwrap();
    let total = opened.plan().steps.len();
    let seen = Mutex::new(Vec::new());
    let progress = |p: Progress<'_>| {
        seen.lock().unwrap().push(match p {
            Progress::Started { .. } => "started".to_owned(),
            Progress::Step { number, .. } => format!("step {number}"),
            Progress::Done { step, .. } => format!("done {}", step.name()),
            Progress::Failed { step, .. } => format!("failed {}", step.name()),
        })
    };
    runbook.run(opened, HOLDER, &progress).await.unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 1 + 2 * total);
    assert_eq!(seen[0], "started");
    assert_eq!(seen[1], "step 1");
    assert_eq!(seen[2], "done preflight");
    assert_eq!(seen.last().unwrap(), "done reprotect");
}

#[tokio::test]
async fn a_lost_region_is_evacuated_one_run_per_application() {
    let world = World::two_regions(100);
    let runbook = world.runbook();
    // Settlement already processes in the west: only trade matching is in the lost region.
    move_once(&runbook, App::Settlement, Mode::Planned, WEST)
        .await
        .unwrap();
    world.lose_region(EAST);
    let moves = runbook.evacuation(EAST, None).await.unwrap();
    assert_eq!(
        moves.iter().map(|m| m.app).collect::<Vec<_>>(),
        [App::TradeMatching]
    );
    assert!(moves
        .iter()
        .all(|m| m.mode == Mode::Unplanned && m.to == WEST && m.from.as_deref() == Some(EAST)));

    // Both applications in the lost region: one run each, trade matching's first.
    let world = World::two_regions(100);
    let runbook = world.runbook();
    world.lose_region(EAST);
    let moves = runbook.evacuation(EAST, None).await.unwrap();
    assert_eq!(
        moves.iter().map(|m| m.app).collect::<Vec<_>>(),
        [App::TradeMatching, App::Settlement]
    );
    for request in &moves {
        let opened = runbook.open(request).await.unwrap();
        runbook.run(opened, HOLDER, &quiet).await.unwrap();
    }
    for app in App::ALL {
        assert_moved(&world, app, EAST, WEST);
    }
    assert!(
        runbook.evacuation(EAST, None).await.unwrap().is_empty(),
        "nothing is left to move"
    );
    assert!(matches!(
        runbook.evacuation("eu-west-1", None).await,
        Err(RunbookError::Refused(Refusal::UnknownRegion(_)))
    ));
}

#[tokio::test]
async fn an_evacuation_interrupted_resumes_the_run_that_holds_the_lock() {
    let world = World::two_regions(100);
    let runbook = world.runbook();
    world.lose_region(EAST);
    // The first attempt stops in its database step (the command killed, say): the lock is held,
    // and nothing processes trade matching anywhere.
    let opened = runbook
        .open(&request(App::TradeMatching, Mode::Unplanned, WEST))
        .await
        .unwrap();
    let first = runbook
        .run(opened, HOLDER, &outage_during(&world, Step::SwitchDatabase))
        .await;
    world.set_outage(false);
    assert!(first.is_err());
    let moves = runbook.evacuation(EAST, None).await.unwrap();
    let trade_matching = moves
        .iter()
        .find(|m| m.app == App::TradeMatching)
        .expect("the interrupted run is part of the evacuation");
    let opened = runbook.open(trade_matching).await.unwrap();
    assert!(opened.resumed, "the run under way resumes");
    runbook.run(opened, HOLDER, &quiet).await.unwrap();
    assert_moved(&world, App::TradeMatching, EAST, WEST);
}

#[tokio::test]
async fn two_runs_stopped_at_their_preflights_do_not_block_each_other() {
    // Found by the chaos suite (seed 14685665642246107202): trade matching's and settlement's
    // rotations both stopped in their preflights, each holding its lock and each refused for the
    // other's, for good.
    let world = World::two_regions(100);
    let runbook = world.runbook();
    world.stop_service(WEST, "matching");
    world.stop_service(WEST, "settlement");
    for app in [App::TradeMatching, App::Settlement] {
        let stopped = move_once(&runbook, app, Mode::Planned, WEST).await;
        assert!(
            matches!(stopped, Err(RunbookError::Stopped { .. })),
            "{app}: {stopped:?}"
        );
        assert!(world.lock(app).is_some(), "{app} keeps its lock");
    }
    world.start_service(WEST, "matching");
    world.start_service(WEST, "settlement");
    // Settlement goes second: trade matching's run, which has changed nothing, still holds it back.
    let settlement = runbook
        .open(&request(App::Settlement, Mode::Planned, WEST))
        .await
        .unwrap();
    assert!(runbook.run(settlement, HOLDER, &quiet).await.is_err());
    // Trade matching goes first, past settlement's stopped preflight, then settlement follows.
    for app in [App::TradeMatching, App::Settlement] {
        let opened = runbook
            .open(&request(app, Mode::Planned, WEST))
            .await
            .unwrap();
        assert!(opened.resumed);
        runbook.run(opened, HOLDER, &quiet).await.unwrap();
        assert_moved(&world, app, EAST, WEST);
    }
}
