//! The console's HTML, rendered on the server (maud escapes every value). Each live part is a
//! fragment the page polls; the page itself is the layout and the buttons.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_operations::ports::Replication;
use keel_operations::status::{Reading, Row, Status};
use keel_operations::telemetry::StageCount;
use keel_operations::{AuditEntry, Health, Opened, Operator, Outcome, Processing, Role};
use keel_rotation::Mode;
use keel_routing::{standard_rules, App};
use maud::{html, Markup, DOCTYPE};

use crate::runs::{RunView, StepView};

/// htmx swaps 4xx answers in too, so that a refusal's reason replaces the button's result.
const HTMX_CONFIG: &str = r#"{"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"4..","swap":true,"error":false},{"code":"...","swap":true,"error":true}]}"#;

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · Keel" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/htmx.min.js" {}
            }
            body { (body) }
        }
    }
}

pub fn sign_in(problem: Option<&str>) -> Markup {
    document(
        "Sign in",
        html! {
            main.sign-in {
                h1 { "Keel console" }
                form method="post" action="/login" {
                    label { "Operator" input name="name" autocomplete="username" required autofocus; }
                    label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Sign in" }
                }
                @if let Some(problem) = problem {
                    p.notice.problem role="alert" { (problem) }
                }
            }
        },
    )
}

fn poll(every: Duration) -> String {
    format!("load, every {}ms", every.as_millis())
}

pub fn page(operator: &Operator, regions: &[String], every: Duration) -> Markup {
    let acts = operator.role == Role::Operator;
    document(
        "Console",
        html! {
            header {
                h1 { "Keel" }
                span #who { "Signed in as " strong { (operator.name) } " (" (operator.role) ")" }
                form method="post" action="/logout" { button type="submit" { "Sign out" } }
            }
            div #notice aria-live="polite" {}
            main {
                section #overview hx-get="/fragments/overview" hx-trigger=(poll(every)) {
                    p { "Reading both regions…" }
                }
                section #actions {
                    h2 { "Actions" }
                    @if !acts {
                        p.hint { "Viewers may look; only an operator may act." }
                    }
                    div.buttons {
                        button #generator-start hx-post="/actions/generator" hx-vals=r#"{"on":"true"}"# hx-target="#notice" disabled[!acts] { "Start generator" }
                        button #generator-stop hx-post="/actions/generator" hx-vals=r#"{"on":"false"}"# hx-target="#notice" disabled[!acts] { "Stop generator" }
                    }
                    form #move hx-post="/actions/plan" hx-target="#dialog" {
                        label { "Application "
                            select name="app" {
                                @for app in App::ALL { option value=(app.name()) { (app.name()) } }
                            }
                        }
                        label { " to "
                            select name="to" {
                                @for region in regions { option value=(region) { (region) } }
                            }
                        }
                        label { " as "
                            select name="mode" {
                                option value="planned" { "planned rotation" }
                                option value="unplanned" { "failover (region lost)" }
                            }
                        }
                        " "
                        button #plan type="submit" disabled[!acts] { "Show the plan" }
                    }
                    form #reprotect hx-post="/actions/reprotect" hx-target="#notice" {
                        label { "Re-protect "
                            select name="app" {
                                @for app in App::ALL { option value=(app.name()) { (app.name()) } }
                            }
                        }
                        " "
                        button type="submit" disabled[!acts] { "Re-protect" }
                    }
                    div #dialog {}
                }
                section #run hx-get="/fragments/run" hx-trigger=(poll(every)) {}
                section #audit hx-get="/fragments/audit" hx-trigger=(poll(every * 2)) {}
            }
        },
    )
}

fn lamp(state: Option<bool>, label: &str) -> Markup {
    let (class, word) = match state {
        Some(true) => ("lamp on", "On"),
        Some(false) => ("lamp off", "Off"),
        None => ("lamp unknown", "?"),
    };
    html! { span class=(class) title=(format!("{label}: {word}")) data-state=(word) { (label) " " (word) } }
}

fn health(health: &Health) -> Markup {
    let class = match health {
        Health::Ready(Processing::Active) => "health active",
        Health::Ready(Processing::Standby(_)) => "health standby",
        Health::Unready(_) => "health unready",
        Health::Fenced(_) => "health fenced",
        Health::Down(_) => "health down",
    };
    html! { span class=(class) { (health.to_string()) } }
}

fn database(reading: &Reading<Replication>) -> Markup {
    match reading {
        Reading::Unreadable(why) => html! { span.problem { "unreadable: " (why) } },
        Reading::Read(Replication::Primary { standbys }) => html! {
            "primary"
            @if standbys.is_empty() { " " span.problem { "(no standby: unprotected)" } }
            @for standby in standbys {
                br;
                "→ " (standby.name) " " (standby.state)
                @if standby.synchronous { " (sync)" }
                ", " (standby.behind_bytes.map_or("?".to_owned(), |b| b.to_string())) " bytes behind"
                @if let Some(seconds) = standby.replay_lag_seconds { ", " (format!("{seconds:.2}")) " s" }
            }
        },
        Reading::Read(Replication::Standby {
            behind_bytes,
            last_replayed_seconds_ago,
        }) => html! {
            "standby, " (behind_bytes.map_or("?".to_owned(), |b| b.to_string())) " bytes to replay"
            @if let Some(seconds) = last_replayed_seconds_ago {
                ", last commit replayed " (format!("{seconds:.1}")) " s ago"
            }
        },
    }
}

fn queues(row: &Row) -> Markup {
    match &row.queues {
        None => html! { "—" },
        Some(Reading::Unreadable(why)) => html! { span.problem { "unreadable: " (why) } },
        Some(Reading::Read(queues)) => html! {
            "outbox " (queues.outbox_depth)
            @for (topic, lag) in &queues.consumer_lag {
                br; (topic) " lag " (lag)
            }
        },
    }
}

fn stage_table(stages: &[StageCount]) -> Markup {
    // Only the region taking traffic accepts; the sum is the load however it moves.
    let rates: Vec<f64> = stages
        .iter()
        .filter(|s| s.service == "ingress")
        .filter_map(|s| s.per_second)
        .collect();
    let ingress: Option<f64> = (!rates.is_empty()).then(|| rates.iter().sum());
    html! {
        h3 { "Stages" }
        p #offered { "Legs accepted at ingress: "
            (ingress.map_or("—".to_owned(), |r| format!("{r:.1}/s")))
            " (the generator's load, and the participants')" }
        table.grid #stages {
            thead { tr { th { "region" } th { "stage" } th { "processed" } th { "per second" } } }
            tbody {
                @for stage in stages {
                    tr data-region=(stage.region) data-service=(stage.service) {
                        td { (stage.region) } td { (stage.service) }
                        // abs: an empty sum is -0.
                        td.count { (format!("{:.0}", stage.count.abs())) }
                        td { (stage.per_second.map_or("—".to_owned(), |r| format!("{r:.1}"))) }
                    }
                }
            }
        }
    }
}

fn gap_list(gaps: &Reading<BTreeMap<String, f64>>) -> Markup {
    html! {
        h3 { "Reconciliation gaps per hop" }
        @match gaps {
            Reading::Unreadable(why) => p.problem #gaps { "unreadable: " (why) },
            Reading::Read(gaps) if gaps.is_empty() => p #gaps { "no reconciliation run yet" },
            Reading::Read(gaps) => ul #gaps {
                @for (hop, count) in gaps {
                    li class=(if *count > 0.0 { "problem" } else { "" }) { (hop) ": " (format!("{count:.0}")) }
                }
            },
        }
    }
}

pub fn overview(
    status: &Status,
    regions: &[String],
    stages: &[StageCount],
    gaps: &Reading<BTreeMap<String, f64>>,
) -> Markup {
    let controls = status.controls.read();
    html! {
        h2 { "Regions" }
        @match &status.controls {
            Reading::Unreadable(why) => p.notice.problem { "Routing controls unreadable: " (why) },
            Reading::Read(_) => p #generator {
                "Generator: " (lamp(status.generator(), "generator"))
            },
        }
        table.grid {
            thead { tr {
                th { "application" } th { "region" } th { "routing controls" }
                th { "services" } th { "database" } th { "queues" }
            } }
            tbody {
                @for row in &status.applications {
                    tr data-app=(row.app.name()) data-region=(row.region) {
                        td { (row.app.name()) }
                        td { (row.region) }
                        td.controls { (lamp(row.traffic, "traffic")) " " (lamp(row.processing, "processing")) }
                        td { @for (service, state) in &row.services { div { (service) ": " (health(state)) } } }
                        td { (database(&row.database)) }
                        td { (queues(row)) }
                    }
                }
            }
        }
        (stage_table(stages))
        (gap_list(gaps))
        h3 { "Safety rules" }
        ul #rules {
            @for rule in standard_rules(regions) {
                @let holds = controls.map(|states| rule.holds(states));
                li class=(match holds { Some(true) => "rule holds", Some(false) => "rule broken", None => "rule unknown" }) {
                    (rule.name) ": " (rule.describe())
                    @match holds { Some(true) => " ✓", Some(false) => " ✗ broken", None => " ?" }
                }
            }
        }
    }
}

pub fn plan(opened: &Opened) -> Markup {
    let plan = opened.plan();
    let verb = match plan.mode {
        Mode::Planned => "Planned rotation",
        Mode::Unplanned => "Failover",
    };
    html! {
        div.plan {
            h3 { (verb) " of " (plan.app) " from " (plan.from) " to " (plan.to) }
            p {
                @if opened.resumed { "Resumes run " (opened.journal.run_id) ". " } @else { "A new run. " }
                "Nothing has changed yet. Each step checks its outcome before the next:"
            }
            ol { @for step in &plan.steps { li { strong { (step.name()) } ": " (step.describe()) } } }
            form hx-post="/actions/run" hx-target="#dialog" {
                input type="hidden" name="app" value=(plan.app.name());
                input type="hidden" name="to" value=(plan.to);
                input type="hidden" name="mode" value=(match plan.mode { Mode::Planned => "planned", Mode::Unplanned => "unplanned" });
                button #confirm type="submit" { "Confirm: " (verb.to_lowercase()) " of " (plan.app) " to " (plan.to) }
                " "
                button type="button" onclick="document.getElementById('dialog').innerHTML=''" { "Cancel" }
            }
        }
    }
}

pub fn started(run_id: &str) -> Markup {
    html! { p.notice { "Run " (run_id) " started; its steps show below as they go." } }
}

pub fn done(what: &str) -> Markup {
    html! { p.notice.ok role="status" { (what) } }
}

fn took(duration: Option<Duration>) -> String {
    duration.map_or(String::new(), |d| format!(" in {:.1} s", d.as_secs_f64()))
}

pub fn run(run: Option<&RunView>) -> Markup {
    let Some(run) = run else {
        return html! { h2 { "Runbook" } p { "No run started from this console yet; past runs are in the audit trail." } };
    };
    let verb = match run.mode {
        Mode::Planned => "Planned rotation",
        Mode::Unplanned => "Failover",
    };
    let state = match &run.ended {
        None => "running",
        Some(Ok(report)) if report.ok => "done",
        Some(_) => "stopped",
    };
    html! {
        h2 { "Runbook" }
        div.run data-state=(state) {
            p { strong { (verb) " of " (run.app) " from " (run.from) " to " (run.to) } " · run " (run.run_id) " · by " (run.operator) " · " span.run-state { (state) } }
            ol.steps {
                @for (step, view) in &run.steps {
                    @let (class, text) = match view {
                        StepView::Waiting => ("step waiting", String::new()),
                        StepView::Running => ("step running", "running…".to_owned()),
                        StepView::Done { took: t, detail } => ("step done", format!("done{}: {detail}", took(*t))),
                        StepView::Failed { took: t, why } => ("step failed", format!("FAILED{}: {why}", took(Some(*t)))),
                    };
                    li class=(class) data-step=(step.name()) { strong { (step.name()) } " " (text) }
                }
            }
            @match &run.ended {
                Some(Ok(report)) => p.report {
                    "RTO: " (report.rto_ms.map_or("not measured".to_owned(), |ms| format!("{ms} ms"))) " · "
                    "RPO: " (report.rpo.as_ref().map_or("not measured".to_owned(), |rpo| rpo.to_string()))
                },
                Some(Err(why)) => p.notice.problem { "Stopped: " (why) ". Start the same move again to resume it." },
                None => {},
            }
        }
    }
}

pub fn audit(entries: &Reading<Vec<AuditEntry>>) -> Markup {
    html! {
        h2 { "Audit trail" }
        @match entries {
            Reading::Unreadable(why) => p.notice.problem { "The audit trail cannot be read: " (why) },
            Reading::Read(entries) => table.grid #trail {
                thead { tr { th { "when" } th { "who" } th { "from" } th { "what" } th { "outcome" } } }
                tbody {
                    @for entry in entries {
                        tr class=(outcome_class(&entry.outcome)) {
                            td { (entry.at.format("%Y-%m-%d %H:%M:%S")) }
                            td { (entry.operator) }
                            td { (entry.channel.to_string()) }
                            td { (entry.action.to_string()) }
                            td { (entry.outcome.to_string()) }
                        }
                    }
                }
            },
        }
    }
}

fn outcome_class(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Begun => "begun",
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Refused { .. } => "refused",
        Outcome::Failed { .. } => "failed",
    }
}
