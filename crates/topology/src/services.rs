use keel_routing::App;

use crate::topics::*;

/// How a service is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Serves the participants' HTTP API on its own listener; its health and metrics are on an ops
    /// listener apart from it.
    Api,
    /// Consumes topics; its health and metrics are on an ops listener of its own.
    Stage,
}

/// One service: its binary is `keel-{name}`, and `name` is also its consumer group, its telemetry
/// name and its key in each region's `services` table of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub app: App,
    /// The schema it owns in its application's database (its safe-store).
    pub schema: &'static str,
    pub kind: Kind,
    /// What it consumes; the first is its main input.
    pub consumes: &'static [&'static str],
    /// What its outbox publishes (besides dead letters).
    pub produces: &'static [&'static str],
}

impl Service {
    /// Where its poison messages go: its application's dead-letter topic, for a stage.
    pub fn dead_letter_topic(&self) -> Option<&'static str> {
        match (self.kind, self.app) {
            (Kind::Api, _) => None,
            (Kind::Stage, App::TradeMatching) => Some(TM_DEAD_LETTERS),
            (Kind::Stage, App::Settlement) => Some(ST_DEAD_LETTERS),
        }
    }

    /// The topics its outbox relay publishes.
    pub fn relayed(&self) -> impl Iterator<Item = &'static str> {
        self.produces
            .iter()
            .copied()
            .chain(self.dead_letter_topic())
    }

    /// Every topic it touches, created at start so that it never waits on another service.
    pub fn topics(&self) -> impl Iterator<Item = &'static str> {
        self.consumes.iter().copied().chain(self.relayed())
    }
}

const TM: App = App::TradeMatching;
const ST: App = App::Settlement;

const fn stage(
    name: &'static str,
    app: App,
    consumes: &'static [&'static str],
    produces: &'static [&'static str],
) -> Service {
    Service {
        name,
        app,
        schema: name,
        kind: Kind::Stage,
        consumes,
        produces,
    }
}

pub const INGRESS: Service = Service {
    name: "ingress",
    app: TM,
    schema: "ingress",
    kind: Kind::Api,
    consumes: &[],
    produces: &[SUBMISSIONS],
};
pub const INGESTION: Service = stage("ingestion", TM, &[SUBMISSIONS], &[TRADES]);
pub const MATCHING: Service = stage(
    "matching",
    TM,
    &[TRADES, SETTLEMENT_RESULTS],
    &[EVENTS, INSTRUCTIONS],
);
pub const NOTIFICATION: Service = stage("notification", TM, &[EVENTS], &[]);
pub const SETTLEMENT: Service = stage("settlement", ST, &[INSTRUCTIONS], &[SETTLEMENT_RESULTS]);

/// Every service, in the order the local stack starts them.
pub const SERVICES: [Service; 5] = [INGRESS, INGESTION, MATCHING, NOTIFICATION, SETTLEMENT];

/// The service called `name`.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

/// The services of one application, in start order.
pub fn services_of(app: App) -> impl Iterator<Item = &'static Service> {
    SERVICES.iter().filter(move |s| s.app == app)
}
