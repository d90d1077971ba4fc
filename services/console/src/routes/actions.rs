//! The buttons: each is one handler shape (decode the form, act through the audit trail, answer a
//! fragment). Rotations and failovers are the runbook's, as keelctl runs them: the plan is shown
//! first (a dry run that changes nothing), and only its confirmation starts the run.

use axum::extract::State;
use axum::Form;
use keel_operations::audit::Acted;
use keel_operations::ports::SystemClock;
use keel_operations::{Action, Auditor, Channel, MoveRequest, Operator, Outcome, Report};
use keel_rotation::Mode;
use keel_routing::{App, GENERATOR};
use maud::Markup;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::app::AppState;
use crate::error::ConsoleError;
use crate::sessions::SignedIn;
use crate::views;

/// What the trail records of a result.
fn outcome<T>(
    summary: impl FnOnce(&T) -> String,
) -> impl FnOnce(&Result<T, ConsoleError>) -> Outcome {
    move |result| Outcome::of(result, summary, ConsoleError::is_refusal)
}

fn unwrap_acted(acted: Acted<ConsoleError>) -> ConsoleError {
    match acted {
        Acted::Denied(denied) => ConsoleError::Denied(denied),
        Acted::Unrecorded(error) => ConsoleError::Unrecorded(error),
        Acted::Failed(error) => error,
    }
}

#[derive(Deserialize)]
pub struct Generator {
    on: bool,
}

pub async fn generator(
    State(state): State<AppState>,
    SignedIn(operator): SignedIn,
    Form(form): Form<Generator>,
) -> Result<Markup, ConsoleError> {
    let action = if form.on {
        Action::StartGenerator
    } else {
        Action::StopGenerator
    };
    let work = async {
        state
            .ports
            .controls
            .set(&[(GENERATOR.to_owned(), form.on)], &[])
            .await?;
        Ok(())
    };
    state
        .auditor()
        .act(&operator, action, work, outcome(|()| String::new()))
        .await
        .map_err(unwrap_acted)?;
    Ok(views::done(if form.on {
        "Generator started."
    } else {
        "Generator stopped."
    }))
}

#[derive(Deserialize)]
pub struct Move {
    app: App,
    to: String,
    mode: Mode,
}

impl Move {
    fn request(&self) -> MoveRequest {
        MoveRequest {
            app: self.app,
            mode: self.mode,
            to: self.to.clone(),
            from: None,
        }
    }

    fn action(&self) -> Action {
        match self.mode {
            Mode::Planned => Action::Rotate {
                app: self.app,
                from: None,
                to: self.to.clone(),
            },
            Mode::Unplanned => Action::Failover {
                app: self.app,
                from: None,
                to: self.to.clone(),
            },
        }
    }
}

/// The dry run: the plan and what each step checks, or why the runbook refuses. Changes nothing,
/// so it is not an action; a viewer is still refused it, as the button is an operator's.
pub async fn plan(
    State(state): State<AppState>,
    SignedIn(operator): SignedIn,
    Form(form): Form<Move>,
) -> Result<Markup, ConsoleError> {
    operator.may_act()?;
    let opened = state.runbook.open(&form.request()).await?;
    Ok(views::plan(&opened))
}

/// Starts the confirmed run in the background and answers once it has started (or why it could
/// not); the page follows its steps in the run fragment.
pub async fn run(
    State(state): State<AppState>,
    SignedIn(operator): SignedIn,
    Form(form): Form<Move>,
) -> Result<Markup, ConsoleError> {
    let (started, has_started) = oneshot::channel::<String>();
    let task = tokio::spawn(carry_out(state, operator, form, started));
    match has_started.await {
        Ok(run_id) => Ok(views::started(&run_id)),
        // It ended before starting: refused, denied, or not recorded.
        Err(_) => match task.await {
            Ok(Err(error)) => Err(error),
            Ok(Ok(())) => Err(ConsoleError::BadRequest(
                "the run ended without starting".to_owned(),
            )),
            Err(panic) => Err(ConsoleError::BadRequest(format!("the run failed: {panic}"))),
        },
    }
}

async fn carry_out(
    state: AppState,
    operator: Operator,
    form: Move,
    started: oneshot::Sender<String>,
) -> Result<(), ConsoleError> {
    let auditor = Auditor {
        trail: state.trail.as_ref(),
        clock: &SystemClock,
        channel: Channel::Console,
    };
    let holder = format!("{} with the console", operator.name);
    let work = async {
        let opened = state.runbook.open(&form.request()).await?;
        state
            .runs
            .begin(&opened, &operator.name)
            .map_err(ConsoleError::RunInProgress)?;
        let _ = started.send(opened.journal.run_id.clone());
        let board = state.runs.clone();
        let result = state
            .runbook
            .run(opened, &holder, &move |progress| board.progress(progress))
            .await;
        state.runs.end(
            result
                .as_ref()
                .map(Report::clone)
                .map_err(|e| e.to_string()),
        );
        Ok(result?)
    };
    auditor
        .act(&operator, form.action(), work, outcome(Report::summary))
        .await
        .map(|_| ())
        .map_err(unwrap_acted)
}

#[derive(Deserialize)]
pub struct Reprotect {
    app: App,
}

pub async fn reprotect(
    State(state): State<AppState>,
    SignedIn(operator): SignedIn,
    Form(form): Form<Reprotect>,
) -> Result<Markup, ConsoleError> {
    let action = Action::Reprotect {
        app: form.app,
        region: None,
    };
    let work = async { Ok(state.runbook.reprotect(form.app, None).await?) };
    let detail = state
        .auditor()
        .act(&operator, action, work, outcome(String::clone))
        .await
        .map_err(unwrap_acted)?;
    Ok(views::done(&detail))
}
