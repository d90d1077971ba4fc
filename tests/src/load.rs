//! The generator as the failover suite, the drills and the chaos runs use it: against every
//! region's ingress, following whichever takes trade matching's traffic, retrying while none does.

use std::time::Duration;

use keel_generator::{Client, DriverOptions, Report};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fixtures::participants;
use crate::stack::Stack;

/// Generation under way.
pub struct Load {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<Report>>,
}

impl Load {
    /// Starts the generator with `options` against every region of `stack`; a request is retried
    /// for up to `retry_for` while no region takes traffic.
    pub fn start(stack: &Stack, options: DriverOptions, retry_for: Duration) -> Load {
        let ingresses: Vec<String> = stack
            .regions
            .values()
            .map(|r| r.ingress_url.clone())
            .collect();
        let client = Client::with_ingresses(&ingresses);
        let options = DriverOptions {
            retry_for,
            ..options
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { keel_generator::run(client, &participants(), options, stop).await }
        });
        Load { stop, task }
    }

    /// Stops generating, waits for the requests in flight, and reports (printing the counts).
    pub async fn finish(self) -> anyhow::Result<Report> {
        self.stop.cancel();
        let report = self.task.await??;
        println!(
            "generator: {} legs accepted, {} refused ({:?}), {} failed; {} redirects, {} retries",
            report.legs_accepted,
            report.legs_refused,
            report.refusals,
            report.legs_failed,
            report.redirects,
            report.retries
        );
        Ok(report)
    }
}
