//! A run's report, made from its journal alone, so a resumed run reports the whole run.

use std::fmt;
use std::time::Duration;

use keel_rotation::{HopTally, Journal, Mode, Rpo, Step, StepState};
use keel_routing::App;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Every step done.
    pub ok: bool,
    pub run_id: String,
    pub app: App,
    pub mode: Mode,
    pub from: String,
    pub to: String,
    /// How long the application took no traffic, once traffic is back.
    pub rto_ms: Option<u64>,
    pub rto_measured_from: &'static str,
    pub rpo: Option<Rpo>,
    pub hops: Vec<HopTally>,
    pub steps: Vec<StepReport>,
}

/// One step's end: done or failed, how long it took, what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub step: Step,
    pub state: StepState,
    pub took_ms: Option<u64>,
    pub detail: String,
}

impl Report {
    pub fn of(journal: &Journal, ok: bool) -> Report {
        let plan = &journal.plan;
        let mut steps = Vec::new();
        let mut started_at = None;
        for record in &journal.records {
            match record.state {
                StepState::Started => started_at = Some(record.at_ms),
                state => steps.push(StepReport {
                    step: record.step,
                    state,
                    took_ms: started_at.map(|s| record.at_ms.saturating_sub(s)),
                    detail: record.detail.clone(),
                }),
            }
        }
        Report {
            ok,
            run_id: journal.run_id.clone(),
            app: plan.app,
            mode: plan.mode,
            from: plan.from.clone(),
            to: plan.to.clone(),
            rto_ms: journal.rto_ms(),
            rto_measured_from: match plan.mode {
                Mode::Planned => "the source's traffic going Off",
                Mode::Unplanned => "the failover command (the source was lost before it)",
            },
            rpo: journal.facts.rpo.clone(),
            hops: journal
                .facts
                .reconciliation
                .as_ref()
                .map(|r| r.hops.clone())
                .unwrap_or_default(),
            steps,
        }
    }
}

impl Report {
    /// One line: the run, and its RTO and RPO, as the audit trail keeps it.
    pub fn summary(&self) -> String {
        let rto = self
            .rto_ms
            .map_or("RTO not measured".to_owned(), |ms| format!("RTO {ms} ms"));
        let rpo = self
            .rpo
            .as_ref()
            .map_or("RPO not measured".to_owned(), |rpo| format!("RPO {rpo}"));
        format!(
            "run {} {} {}: {rto}; {rpo}",
            self.run_id,
            if self.ok { "done" } else { "stopped" },
            mode_name(self.mode)
        )
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Planned => "planned rotation",
        Mode::Unplanned => "unplanned failover",
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {} of {} from {} to {}: {}",
            self.run_id,
            mode_name(self.mode),
            self.app,
            self.from,
            self.to,
            if self.ok { "done" } else { "stopped" }
        )?;
        match self.rto_ms {
            Some(ms) => writeln!(
                f,
                "RTO: {:.1} s without traffic (from {})",
                Duration::from_millis(ms).as_secs_f64(),
                self.rto_measured_from
            )?,
            None => writeln!(f, "RTO: not measured")?,
        }
        match &self.rpo {
            Some(rpo) => writeln!(f, "RPO: {rpo}")?,
            None => writeln!(f, "RPO: not measured")?,
        }
        writeln!(
            f,
            "\n{:<50} {:>16} {:>9} {:>9} {:>16}",
            "hop", "found m/d/o", "replayed", "restored", "left m/d/o"
        )?;
        for hop in &self.hops {
            writeln!(
                f,
                "{:<50} {:>16} {:>9} {:>9} {:>16}",
                hop.hop,
                hop.found.to_string(),
                hop.replayed,
                hop.restored,
                hop.left.to_string()
            )?;
        }
        writeln!(f, "\nsteps:")?;
        for step in &self.steps {
            writeln!(
                f,
                "  {:<16} {:>7} ms  {}",
                step.step.name(),
                step.took_ms.map_or("-".to_owned(), |ms| ms.to_string()),
                step.detail
            )?;
        }
        Ok(())
    }
}

/// "planned rotation" or "unplanned failover".
pub fn verb(mode: Mode) -> &'static str {
    mode_name(mode)
}
