//! Operators' actions over the in-memory trail: recorded before they are taken and completed after,
//! refused to viewers and when the trail cannot be written, with nothing done then.

use std::sync::atomic::{AtomicBool, Ordering};

use keel_operations::audit::Acted;
use keel_operations::fakes::World;
use keel_operations::ports::AuditTrail;
use keel_operations::{Action, Auditor, Channel, Operator, Outcome, Role};
use keel_routing::App;

fn operator(name: &str, role: Role) -> Operator {
    Operator {
        name: name.to_owned(),
        role,
    }
}

fn rotate() -> Action {
    Action::Rotate {
        app: App::TradeMatching,
        from: None,
        to: "us-west-2".to_owned(),
    }
}

fn succeeded(result: &Result<&'static str, String>) -> Outcome {
    match result {
        Ok(detail) => Outcome::Succeeded {
            detail: (*detail).to_owned(),
        },
        Err(reason) => Outcome::Failed {
            reason: reason.clone(),
        },
    }
}

#[tokio::test]
async fn an_operators_action_is_recorded_with_its_outcome() {
    let world = World::two_regions(10);
    let auditor = Auditor {
        trail: world.as_ref(),
        clock: world.as_ref(),
        channel: Channel::Keelctl,
    };
    let ada = operator("ada", Role::Operator);
    let done = auditor
        .act(&ada, rotate(), async { Ok("RTO 900 ms") }, succeeded)
        .await
        .unwrap();
    assert_eq!(done, "RTO 900 ms");
    let failed = auditor
        .act(
            &ada,
            Action::StopGenerator,
            async { Err::<&str, _>("ARC refused".to_owned()) },
            succeeded,
        )
        .await;
    assert!(matches!(failed, Err(Acted::Failed(ref reason)) if reason == "ARC refused"));

    let trail = world.recent(10).await.unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    let (newest, oldest) = (&trail[0], &trail[1]);
    assert_eq!(oldest.action, rotate());
    assert_eq!(oldest.operator, "ada");
    assert_eq!(oldest.channel, Channel::Keelctl);
    assert_eq!(
        oldest.outcome,
        Outcome::Succeeded {
            detail: "RTO 900 ms".to_owned()
        }
    );
    assert!(oldest.finished_at.unwrap() > oldest.at);
    assert_eq!(newest.action, Action::StopGenerator);
    assert_eq!(
        newest.outcome.to_string(),
        "failed: ARC refused",
        "{newest:?}"
    );
    assert_eq!(world.recent(1).await.unwrap(), vec![newest.clone()]);
}

#[tokio::test]
async fn a_viewer_is_refused_and_the_refusal_is_recorded() {
    let world = World::two_regions(10);
    let auditor = Auditor {
        trail: world.as_ref(),
        clock: world.as_ref(),
        channel: Channel::Console,
    };
    let ran = AtomicBool::new(false);
    let result = auditor
        .act(
            &operator("vic", Role::Viewer),
            rotate(),
            async {
                ran.store(true, Ordering::SeqCst);
                Ok("moved")
            },
            succeeded,
        )
        .await;
    assert!(matches!(result, Err(Acted::Denied(_))), "{result:?}");
    assert!(
        !ran.load(Ordering::SeqCst),
        "a viewer's action was carried out"
    );
    let trail = world.recent(10).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].operator, "vic");
    assert_eq!(
        trail[0].outcome,
        Outcome::Refused {
            reason: "vic is a viewer: only an operator may change anything".to_owned()
        }
    );
}

#[tokio::test]
async fn nothing_is_done_when_the_trail_cannot_be_written() {
    let world = World::two_regions(10);
    world.set_store_down(true);
    let auditor = Auditor {
        trail: world.as_ref(),
        clock: world.as_ref(),
        channel: Channel::Keelctl,
    };
    let ran = AtomicBool::new(false);
    let result = auditor
        .act(
            &operator("ada", Role::Operator),
            rotate(),
            async {
                ran.store(true, Ordering::SeqCst);
                Ok("moved")
            },
            succeeded,
        )
        .await;
    assert!(matches!(result, Err(Acted::Unrecorded(_))), "{result:?}");
    assert!(
        !ran.load(Ordering::SeqCst),
        "an unrecorded action was carried out"
    );
    world.set_store_down(false);
    assert!(world.recent(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sign_ins_are_recorded_whether_accepted_or_not() {
    let world = World::two_regions(10);
    let auditor = Auditor {
        trail: world.as_ref(),
        clock: world.as_ref(),
        channel: Channel::Console,
    };
    auditor.sign_in("ada", true).await.unwrap();
    auditor.sign_in("mallory", false).await.unwrap();
    let trail = world.recent(10).await.unwrap();
    assert_eq!(trail[0].operator, "mallory");
    assert_eq!(
        trail[0].outcome.to_string(),
        "refused: unknown operator or wrong password"
    );
    assert_eq!(trail[1].operator, "ada");
    assert_eq!(trail[1].outcome.to_string(), "succeeded");
    assert!(trail.iter().all(|entry| entry.action == Action::SignIn));
}
