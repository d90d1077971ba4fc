//! Each command: read the configuration, call the operations library, render what it answers.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use keel_operations::ports::{ControlsError, RunbookStore};
use keel_operations::{active_regions, describe, MoveRequest, Progress};
use keel_operations_live::reconcile::{self, Repairing, Window};
use keel_operations_live::{ArcControls, DynamoStore};
use keel_rotation::Mode;
use keel_routing::App;

use crate::error::Error;
use crate::{load_config, render, Cli, Command, ControlsCommand, LedgerCommand, MoveArgs};

pub async fn run(cli: Cli) -> Result<(), Error> {
    let json = cli.json;
    match cli.command {
        Command::Status => status(json).await,
        Command::Controls { command } => controls(command, json).await,
        Command::Rotate(args) => move_app(Mode::Planned, args, json).await,
        Command::Failover(args) => move_app(Mode::Unplanned, args, json).await,
        Command::Reprotect { app, region } => reprotect(app, region, json).await,
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
            let store = DynamoStore::new(&config.runbook);
            let repairing = if repair {
                store.ensure_table().await?;
                let regions = active_regions(
                    &ArcControls::new(&config),
                    &config.region_names(),
                    &App::ALL,
                )
                .await?;
                let run_id = format!(
                    "reconcile-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
                );
                Some(Repairing::new(&config, &store, run_id, &regions))
            } else {
                None
            };
            let result = reconcile::run(&config, app, window, repairing.as_ref()).await?;
            render::reconciliation(&result, json);
            match result.left {
                0 => Ok(()),
                left => Err(Error::GapsLeft { left }),
            }
        }
        Command::Unlock { app, run } => {
            let store = DynamoStore::new(&load_config()?.runbook);
            match store.lock_holder(app).await? {
                Some(holder) if holder == run => {
                    store.unlock(app, &run).await?;
                    println!("released {app}'s runbook lock held by run {run}");
                    Ok(())
                }
                Some(holder) => Err(Error::LockHeldByOther { app, holder, run }),
                None => {
                    eprintln!("{app}'s runbook lock is not held");
                    Ok(())
                }
            }
        }
        Command::Audit { run } => {
            let items = DynamoStore::new(&load_config()?.runbook)
                .audit_of(&run)
                .await?;
            if items.is_empty() {
                return Err(Error::NoAudit(run));
            }
            render::audit(items, json);
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

async fn controls(command: ControlsCommand, json: bool) -> Result<(), Error> {
    let arc = keel_arc::ArcClient::new(&load_config()?.control);
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
            let controls = ArcControls(arc);
            keel_operations::ports::RoutingControls::set(&controls, &parsed, &overrides).await?;
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
async fn move_app(mode: Mode, args: MoveArgs, json: bool) -> Result<(), Error> {
    let config = load_config()?;
    let store = DynamoStore::new(&config.runbook);
    store.ensure_table().await?;
    let runbook = keel_operations_live::runbook(&config);
    let opened = runbook
        .open(&MoveRequest {
            app: args.app,
            mode,
            to: args.to,
            from: args.from,
        })
        .await?;
    if args.dry_run {
        render::plan(&opened, json);
        return Ok(());
    }
    if !args.yes {
        confirm(&describe(&opened))?;
    }
    let holder = format!(
        "keelctl pid {} on {}",
        std::process::id(),
        std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".to_owned())
    );
    let report = runbook
        .run(opened, &holder, &|progress: Progress<'_>| {
            render::progress(progress)
        })
        .await?;
    render::report(&report, json);
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

async fn reprotect(app: App, region: Option<String>, json: bool) -> Result<(), Error> {
    let config = load_config()?;
    let store = DynamoStore::new(&config.runbook);
    store.ensure_table().await?;
    eprintln!("rebuilding {app}'s standby database ...");
    let detail = keel_operations_live::runbook(&config)
        .reprotect(app, region.as_deref())
        .await?;
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
