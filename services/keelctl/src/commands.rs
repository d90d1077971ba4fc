//! Each command: read the configuration, call the operations library, render what it answers.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use keel_operations::audit::ControlChange;
use keel_operations::ports::{AuditTrail, ControlsError, RoutingControls, RunbookStore};
use keel_operations::{active_regions, describe, Action, MoveRequest, Progress, Report};
use keel_operations_live::reconcile::{self, Reconciliation, Repairing, Window};
use keel_operations_live::{ArcControls, DynamoStore};
use keel_rotation::Mode;
use keel_routing::{App, GENERATOR};

use crate::error::Error;
use crate::identity::{self, Acting};
use crate::{
    load_config, render, Cli, Command, ControlsCommand, FailoverArgs, GeneratorCommand,
    LedgerCommand, MoveArgs, OperatorsCommand,
};

pub async fn run(cli: Cli) -> Result<(), Error> {
    let json = cli.json;
    let operator = cli.operator.as_deref();
    match cli.command {
        Command::Status => status(json).await,
        Command::Controls { command } => controls(command, operator, json).await,
        Command::Rotate(args) => move_app(Mode::Planned, args, operator, json).await,
        Command::Failover(FailoverArgs {
            region: Some(lost),
            to,
            dry_run,
            yes,
            ..
        }) => evacuate(&lost, to, dry_run, yes, operator, json).await,
        Command::Failover(FailoverArgs {
            app: Some(app),
            to: Some(to),
            from,
            dry_run,
            yes,
            ..
        }) => {
            let args = MoveArgs {
                app,
                to,
                from,
                dry_run,
                yes,
            };
            move_app(Mode::Unplanned, args, operator, json).await
        }
        Command::Failover(_) => unreachable!("clap requires --app with --to, or --region"),
        Command::Reprotect { app, region } => reprotect(app, region, operator, json).await,
        Command::Generator { command } => {
            let on = matches!(command, GeneratorCommand::Start);
            let config = load_config()?;
            let acting = Acting::sign_in(&config, operator).await?;
            let action = if on {
                Action::StartGenerator
            } else {
                Action::StopGenerator
            };
            let controls = ArcControls::new(&config);
            let change = [(GENERATOR.to_owned(), on)];
            acting
                .act(
                    action,
                    async {
                        RoutingControls::set(&controls, &change, &[]).await?;
                        Ok(())
                    },
                    |()| String::new(),
                )
                .await?;
            render::updated(
                &[format!("{GENERATOR}={}", if on { "On" } else { "Off" })],
                json,
            );
            Ok(())
        }
        Command::Operators { command } => match command {
            OperatorsCommand::List => {
                let registry = load_config()?.operators.registry()?;
                render::operators(registry.operators(), json);
                Ok(())
            }
            OperatorsCommand::Hash => {
                println!("{}", identity::hash_from_input()?);
                Ok(())
            }
        },
        Command::Reconcile {
            app,
            window_minutes,
            settle_seconds,
            repair,
            watch,
            metrics_listen,
            interval_seconds,
            rounds,
        } => {
            let window = Window {
                seconds: minutes_to_seconds(window_minutes),
                settle_seconds,
            };
            let config = load_config()?;
            window.within(&config.retention)?;
            if watch {
                let interval = Duration::from_secs(interval_seconds);
                return Ok(reconcile::watch(
                    &config,
                    app,
                    window,
                    interval,
                    rounds,
                    &metrics_listen,
                )
                .await?);
            }
            let result = if repair {
                let acting = Acting::sign_in(&config, operator).await?;
                let store = DynamoStore::new(&config.runbook);
                let run_id = format!(
                    "reconcile-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
                );
                let work = async {
                    let regions = active_regions(
                        &ArcControls::new(&config),
                        &config.region_names(),
                        &App::ALL,
                    )
                    .await?;
                    let repairing = Repairing::new(&config, &store, run_id.clone(), &regions);
                    Ok(reconcile::run(&config, app, window, Some(&repairing)).await?)
                };
                let action = Action::Repair {
                    run: run_id.clone(),
                };
                acting
                    .act(action, work, |result: &Reconciliation| {
                        format!(
                            "{} gap(s) found, {} repaired, {} left",
                            result.found, result.repaired, result.left
                        )
                    })
                    .await?
            } else {
                reconcile::run(&config, app, window, None).await?
            };
            render::reconciliation(&result, json);
            match result.left {
                0 => Ok(()),
                left => Err(Error::GapsLeft { left }),
            }
        }
        Command::Unlock { app, run } => {
            let config = load_config()?;
            let acting = Acting::sign_in(&config, operator).await?;
            let store = DynamoStore::new(&config.runbook);
            let action = Action::Unlock {
                app,
                run: run.clone(),
            };
            let work = async {
                match store.lock_holder(app).await? {
                    Some(holder) if holder == run => {
                        store.unlock(app, &run).await?;
                        Ok(format!("released {app}'s runbook lock held by run {run}"))
                    }
                    Some(holder) => Err(Error::LockHeldByOther {
                        app,
                        holder,
                        run: run.clone(),
                    }),
                    None => Ok(format!("{app}'s runbook lock is not held")),
                }
            };
            let said = acting.act(action, work, String::clone).await?;
            println!("{said}");
            Ok(())
        }
        Command::Audit { run: Some(run), .. } => {
            let items = DynamoStore::new(&load_config()?.runbook)
                .audit_of(&run)
                .await?;
            if items.is_empty() {
                return Err(Error::NoAudit(run));
            }
            render::audit(items, json);
            Ok(())
        }
        Command::Audit { run: None, limit } => {
            let store = DynamoStore::new(&load_config()?.runbook);
            store.ensure_table().await?;
            render::actions(&AuditTrail::recent(&store, limit).await?, json);
            Ok(())
        }
        Command::Ledger {
            command: LedgerCommand::Verify { database_url },
        } => {
            let database_url = match database_url {
                Some(url) => url,
                None => {
                    let config = load_config()?;
                    let regions = active_regions(
                        &ArcControls::new(&config),
                        &config.region_names(),
                        &[App::Settlement],
                    )
                    .await?;
                    config
                        .database_url(App::Settlement, &regions[&App::Settlement])?
                        .to_owned()
                }
            };
            let snapshot = keel_operations_live::ledger::read_snapshot(&database_url).await?;
            let verified = keel_ledger::verify(&snapshot)?;
            render::ledger(&verified, json);
            Ok(())
        }
    }
}

async fn status(json: bool) -> Result<(), Error> {
    let config = load_config()?;
    let ports = keel_operations_live::ports(&config);
    let status = keel_operations::status::gather(&ports, &config.region_names()).await;
    render::status(&status, json);
    match &status.controls {
        keel_operations::status::Reading::Read(_) => Ok(()),
        keel_operations::status::Reading::Unreadable(why) => Err(Error::Incomplete(format!(
            "the routing controls cannot be read: {why}"
        ))),
    }
}

async fn controls(
    command: ControlsCommand,
    operator: Option<&str>,
    json: bool,
) -> Result<(), Error> {
    let config = load_config()?;
    let arc = keel_arc::ArcClient::new(&config.control);
    match command {
        ControlsCommand::List => {
            let controls = arc
                .list()
                .await
                .map_err(|e| Error::Controls(ControlsError::Unreachable(e.to_string())))?;
            render::controls(&controls, json);
            Ok(())
        }
        ControlsCommand::Set { changes, overrides } => {
            let parsed = changes
                .iter()
                .map(|change| parse_change(change))
                .collect::<Result<Vec<_>, _>>()?;
            let acting = Acting::sign_in(&config, operator).await?;
            let controls = ArcControls(arc);
            let action = Action::SetControls {
                changes: parsed
                    .iter()
                    .map(|(control, on)| ControlChange {
                        control: control.clone(),
                        on: *on,
                    })
                    .collect(),
                overrides: overrides.clone(),
            };
            let work = async {
                RoutingControls::set(&controls, &parsed, &overrides).await?;
                Ok(())
            };
            acting.act(action, work, |()| String::new()).await?;
            render::updated(&changes, json);
            Ok(())
        }
    }
}

/// `NAME=On` or `NAME=Off`, in any case.
fn parse_change(change: &str) -> Result<(String, bool), Error> {
    let bad = || Error::BadChange {
        change: change.to_owned(),
    };
    let (name, state) = change.split_once('=').ok_or_else(bad)?;
    match state.to_ascii_lowercase().as_str() {
        "on" => Ok((name.to_owned(), true)),
        "off" => Ok((name.to_owned(), false)),
        _ => Err(bad()),
    }
}

/// `keelctl rotate` and `keelctl failover`: the runbook's plan (a dry run), or the run, confirmed,
/// with its progress on stderr and its report on stdout.
async fn move_app(
    mode: Mode,
    args: MoveArgs,
    operator: Option<&str>,
    json: bool,
) -> Result<(), Error> {
    let config = load_config()?;
    let runbook = keel_operations_live::runbook(&config);
    let request = MoveRequest {
        app: args.app,
        mode,
        to: args.to,
        from: args.from,
    };
    if args.dry_run {
        DynamoStore::new(&config.runbook).ensure_table().await?;
        render::plan(&runbook.open(&request).await?, json);
        return Ok(());
    }
    let acting = Acting::sign_in(&config, operator).await?;
    let action = match mode {
        Mode::Planned => Action::Rotate {
            app: request.app,
            from: request.from.clone(),
            to: request.to.clone(),
        },
        Mode::Unplanned => Action::Failover {
            app: request.app,
            from: request.from.clone(),
            to: request.to.clone(),
        },
    };
    let work = async {
        let opened = runbook.open(&request).await?;
        if !args.yes {
            confirm(&describe(&opened))?;
        }
        let report = runbook
            .run(opened, &acting.holder(), &|progress: Progress<'_>| {
                render::progress(progress)
            })
            .await?;
        Ok(report)
    };
    let report = acting.act(action, work, Report::summary).await?;
    render::report(&report, json);
    Ok(())
}

/// `keelctl failover --region LOST`: every application out of the lost region, each its own audited
/// run under its own lock, with the time from the command to each application serving.
async fn evacuate(
    lost: &str,
    to: Option<String>,
    dry_run: bool,
    yes: bool,
    operator: Option<&str>,
    json: bool,
) -> Result<(), Error> {
    let commanded = std::time::Instant::now();
    let config = load_config()?;
    let runbook = keel_operations_live::runbook(&config);
    // Which runs are under way is read from the store, before anything else.
    DynamoStore::new(&config.runbook).ensure_table().await?;
    let moves = runbook.evacuation(lost, to.as_deref()).await?;
    if moves.is_empty() {
        render::detail(
            &format!("no application processes in {lost}; nothing to fail over"),
            json,
        );
        return Ok(());
    }
    let mut opened = Vec::new();
    for request in &moves {
        opened.push(runbook.open(request).await?);
    }
    if dry_run {
        for run in &opened {
            render::plan(run, json);
        }
        return Ok(());
    }
    let acting = Acting::sign_in(&config, operator).await?;
    if !yes {
        let plans: Vec<String> = opened.iter().map(describe).collect();
        confirm(&plans.join("\n"))?;
    }
    let holder = acting.holder();
    // One after another, in the topology's order (trade matching, which takes the participants'
    // traffic, first): one runbook runs at a time, since both reconcile the hops between the two.
    let mut moved = Vec::new();
    for (request, run) in moves.iter().zip(opened) {
        let app = request.app;
        let action = Action::Failover {
            app,
            from: request.from.clone(),
            to: request.to.clone(),
        };
        let work = async {
            let progress = move |p: Progress<'_>| render::progress_of(app, p);
            Ok(runbook.run(run, &holder, &progress).await?)
        };
        match acting.act(action, work, Report::summary).await {
            Ok(report) => moved.push((report, commanded.elapsed())),
            Err(error) => {
                render::evacuation(lost, &moved, json);
                return Err(error);
            }
        }
    }
    render::evacuation(lost, &moved, json);
    Ok(())
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(plan: &str) -> Result<(), Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Unconfirmed);
    }
    eprint!("{plan}\nGo ahead? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok();
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Declined)
    }
}

async fn reprotect(
    app: App,
    region: Option<String>,
    operator: Option<&str>,
    json: bool,
) -> Result<(), Error> {
    let config = load_config()?;
    let acting = Acting::sign_in(&config, operator).await?;
    let action = Action::Reprotect {
        app,
        region: region.clone(),
    };
    let work = async {
        eprintln!("rebuilding {app}'s standby database ...");
        Ok(keel_operations_live::runbook(&config)
            .reprotect(app, region.as_deref())
            .await?)
    };
    let detail = acting.act(action, work, String::clone).await?;
    render::detail(&detail, json);
    Ok(())
}

#[allow(clippy::float_arithmetic)] // a duration typed by an operator, not money
fn minutes_to_seconds(minutes: f64) -> f64 {
    minutes * 60.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_change_is_name_equals_on_or_off() {
        assert_eq!(parse_change("a-b=On").unwrap(), ("a-b".to_owned(), true));
        assert_eq!(parse_change("a-b=off").unwrap(), ("a-b".to_owned(), false));
        for bad in ["a-b", "a-b=maybe"] {
            let error = parse_change(bad).unwrap_err();
            assert!(matches!(error, Error::BadChange { .. }), "{error:?}");
            assert_eq!(error.exit_code(), std::process::ExitCode::from(2));
        }
    }
}
