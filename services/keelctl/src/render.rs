//! What keelctl prints: text for a person, or JSON (`--json`) for a program. Progress goes to
//! stderr, so `--json` leaves stdout to the result.

use std::collections::BTreeMap;

use keel_arc::RoutingControl;
use keel_ledger::Verified;
use keel_operations::ports::Replication;
use keel_operations::status::{Reading, Status};
use keel_operations::{AuditEntry, Opened, Operator, Progress, Report, RunbookError};
use keel_operations_live::reconcile::Reconciliation;
use serde::Serialize;
use serde_json::json;

use crate::error::Error;

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("what keelctl prints serializes")
    );
}

/// A failure: named on stderr; with `--json`, what a program needs on stdout.
pub fn error(error: &Error, json: bool) {
    eprintln!("error: {error}");
    if let Error::Runbook(RunbookError::Stopped {
        run_id,
        number,
        report,
        ..
    }) = error
    {
        eprintln!(
            "run {run_id} stopped at step {number} and keeps the lock; once the cause is fixed, run the same command to resume (runbooks/{}.md)",
            match report.mode {
                keel_rotation::Mode::Planned => "rotation",
                keel_rotation::Mode::Unplanned => "disaster-recovery",
            }
        );
    }
    if !json {
        return;
    }
    match error {
        Error::Runbook(RunbookError::Stopped { report, .. }) => print_json(report),
        Error::Runbook(RunbookError::Refused(refusal)) => {
            print_json(&json!({"ok": false, "error": error.to_string(), "refusal": refusal}))
        }
        Error::LedgerViolation(violation) => {
            print_json(&json!({"ok": false, "violation": violation.to_string()}))
        }
        // The result was printed already.
        Error::GapsLeft { .. } | Error::Incomplete(_) => {}
        _ => print_json(&json!({"ok": false, "error": error.to_string()})),
    }
}

/// Progress of one of several runs at once, each line naming its application.
pub fn progress_of(app: keel_routing::App, progress: Progress<'_>) {
    eprintln!("{app}: {}", progress_line(progress));
}

pub fn progress(progress: Progress<'_>) {
    eprintln!("{}", progress_line(progress));
}

fn progress_line(progress: Progress<'_>) -> String {
    match progress {
        Progress::Started {
            run_id,
            resumed,
            plan,
        } => format!(
            "{} run {run_id}: {} of {} from {} to {}",
            if resumed { "resuming" } else { "started" },
            keel_operations::report::verb(plan.mode),
            plan.app,
            plan.from,
            plan.to
        ),
        Progress::Step {
            number,
            total,
            step,
            again,
        } => format!(
            "[{number}/{total}] {}{}",
            step.describe(),
            if again {
                " (again: the run stopped in it)"
            } else {
                ""
            }
        ),
        Progress::Done { took, detail, .. } => {
            format!("      done in {:.1} s: {detail}", took.as_secs_f64())
        }
        Progress::Failed { took, why, .. } => {
            format!("      FAILED after {:.1} s: {why}", took.as_secs_f64())
        }
    }
}

pub fn plan(opened: &Opened, json: bool) {
    if !json {
        println!("{}", keel_operations::describe(opened));
        return;
    }
    let plan = opened.plan();
    let steps: Vec<_> = plan
        .steps
        .iter()
        .map(|s| json!({"step": s, "checks": s.describe()}))
        .collect();
    print_json(&json!({
        "dry_run": true, "run_id": opened.journal.run_id, "resumes": opened.resumed,
        "app": plan.app, "mode": plan.mode, "from": plan.from, "to": plan.to,
        "steps": steps,
    }));
}

pub fn report(report: &Report, json: bool) {
    if json {
        print_json(report);
    } else {
        println!("\n{report}");
    }
}

/// The runs of a regional failover that finished, each with how long after the command its
/// application was serving again.
pub fn evacuation(lost: &str, moved: &[(Report, std::time::Duration)], json: bool) {
    if json {
        let reports: Vec<_> = moved.iter().map(|(report, _)| report).collect();
        let serving: BTreeMap<String, u128> = moved
            .iter()
            .map(|(report, after)| (report.app.to_string(), after.as_millis()))
            .collect();
        print_json(&json!({"region": lost, "reports": reports, "serving_after_ms": serving}));
        return;
    }
    for (report, _) in moved {
        println!("\n{report}");
    }
    let serving: Vec<String> = moved
        .iter()
        .map(|(report, after)| {
            format!(
                "{} serving {} ms after the command",
                report.app,
                after.as_millis()
            )
        })
        .collect();
    if !serving.is_empty() {
        println!("\n{lost} evacuated: {}", serving.join("; "));
    }
}

pub fn detail(detail: &str, json: bool) {
    if json {
        print_json(&json!({"ok": true, "detail": detail}));
    } else {
        println!("{detail}");
    }
}

pub fn reconciliation(result: &Reconciliation, json: bool) {
    if json {
        print_json(result);
    } else {
        println!("{result}");
    }
}

pub fn audit(items: Vec<(String, String)>, json: bool) {
    if json {
        print_json(&items.into_iter().collect::<BTreeMap<_, _>>());
    } else {
        for (what, action) in items {
            println!("{what}\t{action}");
        }
    }
}

/// The audit trail's actions, newest first.
pub fn actions(entries: &[AuditEntry], json: bool) {
    if json {
        print_json(&entries);
    } else if entries.is_empty() {
        println!("no action recorded yet");
    } else {
        for entry in entries {
            println!("{entry}");
        }
    }
}

pub fn operators(operators: impl Iterator<Item = Operator>, json: bool) {
    let operators: Vec<Operator> = operators.collect();
    if json {
        print_json(&operators);
    } else {
        for operator in operators {
            println!("{:<24} {}", operator.name, operator.role);
        }
    }
}

pub fn ledger(verified: &Verified, json: bool) {
    if json {
        print_json(&json!({"ok": true, "verified": verified}));
    } else {
        println!(
            "ledger verified: {} accounts, {} settled instructions, {} postings, {} positions, {} assets; \
             every instruction balances, every position equals its opening balance plus its postings, \
             every asset is conserved, nothing is negative where not allowed",
            verified.accounts, verified.instructions, verified.postings, verified.positions, verified.assets
        );
    }
}

pub fn updated(changes: &[String], json: bool) {
    if json {
        print_json(&json!({"updated": changes}));
    } else {
        println!("updated: {}", changes.join(", "));
    }
}

pub fn controls(controls: &[RoutingControl], json: bool) {
    if json {
        let map: BTreeMap<_, _> = controls.iter().map(|c| (c.name.clone(), c.on)).collect();
        print_json(&map);
        return;
    }
    for c in controls {
        println!(
            "{:<40} {:<4} {}",
            c.name,
            on_off(Some(c.on)),
            c.control_panel
        );
    }
}

fn on_off(state: Option<bool>) -> &'static str {
    match state {
        Some(true) => "On",
        Some(false) => "Off",
        None => "?",
    }
}

pub fn status(status: &Status, json: bool) {
    if json {
        print_json(status);
        return;
    }
    match &status.controls {
        Reading::Unreadable(why) => println!("routing controls unreadable: {why}\n"),
        Reading::Read(_) => println!("generator: {}\n", on_off(status.generator())),
    }
    println!(
        "{:<15} {:<10} {:<8} {:<10} {:<11} {:>12} {:>8} {:>8}  services",
        "application",
        "region",
        "traffic",
        "processing",
        "database",
        "repl lag",
        "cons lag",
        "outbox"
    );
    for row in &status.applications {
        let (role, lag) = match &row.database {
            Reading::Unreadable(_) => ("unreachable", "-".to_owned()),
            Reading::Read(Replication::Standby {
                behind_bytes,
                last_replayed_seconds_ago,
            }) => (
                "standby",
                match (behind_bytes, last_replayed_seconds_ago) {
                    // Caught up: the age of the last commit replayed is not a lag.
                    (Some(0), _) => "0 B".to_owned(),
                    (Some(bytes), Some(seconds)) => format!("{bytes} B/{seconds:.1}s"),
                    (Some(bytes), None) => format!("{bytes} B"),
                    (None, Some(seconds)) => format!("{seconds:.1}s"),
                    (None, None) => "-".to_owned(),
                },
            ),
            Reading::Read(Replication::Primary { standbys }) => (
                "primary",
                standbys
                    .iter()
                    .filter_map(|s| s.behind_bytes)
                    .max()
                    .map_or("-".to_owned(), |bytes| format!("{bytes} B")),
            ),
        };
        let (consumer_lag, outbox) = match &row.queues {
            Some(Reading::Read(queues)) => (
                queues.consumer_lag.values().sum::<i64>().to_string(),
                queues.outbox_depth.to_string(),
            ),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<15} {:<10} {:<8} {:<10} {:<11} {:>12} {:>8} {:>8}  {}",
            row.app,
            row.region,
            on_off(row.traffic),
            on_off(row.processing),
            role,
            lag,
            consumer_lag,
            outbox,
            row.services
                .iter()
                .map(|(s, h)| format!("{s}: {h}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Reading::Unreadable(why) = &row.database {
            println!("{:<26} database: {why}", "");
        }
        if let Some(Reading::Unreadable(why)) = &row.queues {
            println!("{:<26} queues: {why}", "");
        }
        if row.unprotected() {
            println!("{:<26} database: no standby is connected", "");
        }
    }
}
