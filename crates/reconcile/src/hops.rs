use keel_messages::topics;
use keel_routing::App;
use serde::Serialize;

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

const fn side(app: App, schema: &'static str) -> Side {
    Side { app, schema }
}

const TM: App = App::TradeMatching;
const ST: App = App::Settlement;

/// Every hop, in the order a message flows: a replay into one hop produces into the next, so
/// reconciliation checks them in this order and lets each settle before the next.
const HOPS: [Hop; 5] = [
    Hop {
        topic: topics::SUBMISSIONS,
        upstream: side(TM, "ingress"),
        downstream: side(TM, "ingestion"),
    },
    Hop {
        topic: topics::TRADES,
        upstream: side(TM, "ingestion"),
        downstream: side(TM, "matching"),
    },
    Hop {
        topic: topics::INSTRUCTIONS,
        upstream: side(TM, "matching"),
        downstream: side(ST, "settlement"),
    },
    Hop {
        topic: topics::SETTLEMENT_RESULTS,
        upstream: side(ST, "settlement"),
        downstream: side(TM, "matching"),
    },
    Hop {
        topic: topics::EVENTS,
        upstream: side(TM, "matching"),
        downstream: side(TM, "notification"),
    },
];

/// Every hop of both applications, in flow order.
pub fn hops() -> &'static [Hop] {
    &HOPS
}

/// The hops that touch `app`: its own, and both hops between the applications.
pub fn hops_of(app: App) -> impl Iterator<Item = &'static Hop> {
    HOPS.iter()
        .filter(move |hop| hop.upstream.app == app || hop.downstream.app == app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_topic_is_one_hop_and_flows_on_from_where_the_last_ended() {
        let topics: std::collections::BTreeSet<_> = hops().iter().map(|h| h.topic).collect();
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
    fn settlement_has_the_two_inter_application_hops_and_trade_matching_all() {
        let settlement: Vec<_> = hops_of(App::Settlement).collect();
        assert_eq!(settlement.len(), 2);
        assert!(settlement.iter().all(|hop| hop.crosses_applications()));
        assert_eq!(hops_of(App::TradeMatching).count(), 5);
        assert_eq!(hops()[0].name(), "ingress -> ingestion (tm.submissions)");
    }
}
