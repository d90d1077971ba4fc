use std::sync::LazyLock;

use keel_routing::App;
use serde::Serialize;

use crate::services::{Service, SERVICES};
use crate::topics::*;

/// One side of a hop: a service's schema in its application's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Side {
    pub app: App,
    pub schema: &'static str,
}

/// A producer's outbox rows for `topic`, and the consumer's inbox rows for the same topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub topic: &'static str,
    /// Whose outbox holds what was produced.
    pub upstream: Side,
    /// Whose inbox holds what was consumed.
    pub downstream: Side,
}

impl Hop {
    /// `upstream.schema -> downstream.schema (topic)`, as reports name it.
    pub fn name(&self) -> String {
        format!(
            "{} -> {} ({})",
            self.upstream.schema, self.downstream.schema, self.topic
        )
    }

    /// Whether the hop joins the two applications, whose databases fail over separately: only there
    /// can the downstream hold what the upstream lost.
    pub fn crosses_applications(&self) -> bool {
        self.upstream.app != self.downstream.app
    }
}

/// The topics between safe-stores in the order a message flows: a replay into one hop produces
/// into the next, so reconciliation checks them in this order and lets each settle before the next.
/// The order is declared, not derived, because matching produces both instructions and events from
/// either of its inputs.
pub const FLOW: [&str; 5] = [
    SUBMISSIONS,
    TRADES,
    INSTRUCTIONS,
    SETTLEMENT_RESULTS,
    EVENTS,
];

static HOPS: LazyLock<Vec<Hop>> = LazyLock::new(|| {
    FLOW.iter()
        .map(|topic| Hop {
            topic,
            upstream: side(the_one(topic, "produces", |s| s.produces)),
            downstream: side(the_one(topic, "consumes", |s| s.consumes)),
        })
        .collect()
});

fn side(service: &Service) -> Side {
    Side {
        app: service.app,
        schema: service.schema,
    }
}

/// The one service whose `list` holds `topic`: a hop has exactly one producer and one consumer.
fn the_one(
    topic: &str,
    what: &str,
    list: impl Fn(&Service) -> &'static [&'static str],
) -> &'static Service {
    let mut found = SERVICES.iter().filter(|s| list(s).contains(&topic));
    match (found.next(), found.next()) {
        (Some(service), None) => service,
        _ => panic!("the topology needs exactly one service that {what} {topic}"),
    }
}

/// Every hop of both applications, in flow order.
pub fn hops() -> &'static [Hop] {
    &HOPS
}

/// The hops that touch `app`: its own, and both hops between the applications.
pub fn hops_of(app: App) -> impl Iterator<Item = &'static Hop> {
    hops()
        .iter()
        .filter(move |hop| hop.upstream.app == app || hop.downstream.app == app)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::services::Kind;

    #[test]
    fn each_topic_is_one_hop_and_flows_on_from_where_the_last_ended() {
        let topics: BTreeSet<_> = hops().iter().map(|h| h.topic).collect();
        assert_eq!(topics.len(), hops().len());
        // Every upstream after the first was fed by an earlier hop.
        for (i, hop) in hops().iter().enumerate().skip(1) {
            assert!(
                hops()[..i]
                    .iter()
                    .any(|earlier| earlier.downstream.schema == hop.upstream.schema),
                "{} is checked before anything feeds it",
                hop.name()
            );
        }
    }

    #[test]
    fn every_topic_a_service_produces_is_consumed_and_is_a_hop() {
        let produced: BTreeSet<_> = SERVICES.iter().flat_map(|s| s.produces).copied().collect();
        let consumed: BTreeSet<_> = SERVICES.iter().flat_map(|s| s.consumes).copied().collect();
        let flow: BTreeSet<_> = FLOW.into_iter().collect();
        assert_eq!(produced, consumed);
        assert_eq!(produced, flow);
    }

    #[test]
    fn names_and_schemas_are_unique_and_only_stages_consume() {
        let names: BTreeSet<_> = SERVICES.iter().map(|s| s.name).collect();
        let schemas: BTreeSet<_> = SERVICES.iter().map(|s| s.schema).collect();
        assert_eq!(names.len(), SERVICES.len());
        assert_eq!(schemas.len(), SERVICES.len());
        for service in &SERVICES {
            assert_eq!(service.kind == Kind::Stage, !service.consumes.is_empty());
        }
    }

    #[test]
    fn a_topic_goes_to_the_application_that_consumes_it() {
        // The relay routes a topic to the active region of `App::receiving` (by its prefix).
        for hop in hops() {
            assert_eq!(
                App::receiving(hop.topic),
                Some(hop.downstream.app),
                "{}",
                hop.topic
            );
        }
        for service in &SERVICES {
            if let Some(dead_letters) = service.dead_letter_topic() {
                assert_eq!(App::receiving(dead_letters), Some(service.app));
            }
        }
    }

    #[test]
    fn settlement_has_the_two_inter_application_hops_and_trade_matching_all() {
        let settlement: Vec<_> = hops_of(App::Settlement).collect();
        assert_eq!(settlement.len(), 2);
        assert!(settlement.iter().all(|hop| hop.crosses_applications()));
        assert_eq!(hops_of(App::TradeMatching).count(), 5);
        assert_eq!(hops()[0].name(), "ingress -> ingestion (tm.submissions)");
    }
}
