use chrono::NaiveDate;
use keel_domain::Isin;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The share of each kind of trade the generator makes (normalized; need not sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    pub matching: f64,
    /// Matching trades allocated to the IM's unfunded fund (`{IM}-FUND-999`): they fail to settle for
    /// lack of cash (a buy) or securities (a sell).
    pub failing: f64,
    pub mismatching: f64,
    pub unmatched: f64,
    pub invalid: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            matching: 0.83,
            failing: 0.02,
            mismatching: 0.07,
            unmatched: 0.05,
            invalid: 0.03,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;
    /// `matching=0.8,failing=0.02,mismatching=0.08,unmatched=0.05,invalid=0.05`; kinds not named get 0.
    fn from_str(raw: &str) -> Result<Self, String> {
        let mut mix = Mix {
            matching: 0.0,
            failing: 0.0,
            mismatching: 0.0,
            unmatched: 0.0,
            invalid: 0.0,
        };
        for part in raw.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("expected name=share, got {part:?}"))?;
            let value: f64 = value
                .parse()
                .map_err(|_| format!("{name}: {value:?} is not a number"))?;
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{name}: share must be between 0 and 1"));
            }
            match name {
                "matching" => mix.matching = value,
                "failing" => mix.failing = value,
                "mismatching" => mix.mismatching = value,
                "unmatched" => mix.unmatched = value,
                "invalid" => mix.invalid = value,
                other => return Err(format!("unknown kind {other:?}")),
            }
        }
        if mix.total() <= 0.0 {
            return Err("at least one share must be positive".into());
        }
        Ok(mix)
    }
}

impl Mix {
    fn total(&self) -> f64 {
        self.matching + self.failing + self.mismatching + self.unmatched + self.invalid
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegKind {
    Matching,
    /// Matches, then fails to settle.
    Failing,
    Mismatching,
    Unmatched,
    Invalid,
}

/// One generated trade: the IM's leg and, unless it is meant to stay unmatched, the broker's.
#[derive(Debug, Clone)]
pub struct PlannedTrade {
    pub kind: LegKind,
    pub im: String,
    pub broker: String,
    pub im_leg: Value,
    pub broker_leg: Option<Value>,
}

/// The fund every IM has in the local reference data with nothing in it.
const UNFUNDED_FUND: usize = 999;

const SECURITIES: [&str; 6] = [
    "US0378331005",
    "US5949181045",
    "US88160R1014",
    "US0231351067",
    "GB0002634946",
    "DE0007164600",
];

pub struct TradeFactory {
    rng: StdRng,
    mix: Mix,
    ims: Vec<String>,
    brokers: Vec<String>,
    prefix: String,
    next: u64,
    trade_date: NaiveDate,
}

impl TradeFactory {
    /// `prefix` keeps trade refs unique across runs (for example the seed or the start time).
    pub fn new(seed: u64, mix: Mix, ims: Vec<String>, brokers: Vec<String>, prefix: &str) -> Self {
        assert!(
            !ims.is_empty() && !brokers.is_empty(),
            "the generator needs at least one IM and one broker"
        );
        Self {
            rng: StdRng::seed_from_u64(seed),
            mix,
            ims,
            brokers,
            prefix: prefix.to_owned(),
            next: 0,
            trade_date: chrono::Utc::now().date_naive(),
        }
    }

    fn kind(&mut self) -> LegKind {
        let mut pick = self.rng.random::<f64>() * self.mix.total();
        for (share, kind) in [
            (self.mix.matching, LegKind::Matching),
            (self.mix.failing, LegKind::Failing),
            (self.mix.mismatching, LegKind::Mismatching),
            (self.mix.unmatched, LegKind::Unmatched),
        ] {
            if pick < share {
                return kind;
            }
            pick -= share;
        }
        LegKind::Invalid
    }

    pub fn next_trade(&mut self) -> PlannedTrade {
        let kind = self.kind();
        self.next_of(kind)
    }

    pub fn next_of(&mut self, kind: LegKind) -> PlannedTrade {
        self.next += 1;
        let im = self.ims[self.rng.random_range(0..self.ims.len())].clone();
        let broker = self.brokers[self.rng.random_range(0..self.brokers.len())].clone();
        let quantity_lots: u64 = self.rng.random_range(1..=100);
        let allocations_count = match kind {
            LegKind::Failing => 1,
            _ => self.rng.random_range(1..=10usize),
        };
        let quantity = quantity_lots * 100 * allocations_count as u64;
        let per_allocation = quantity / allocations_count as u64;
        let allocations: Vec<Value> = (0..allocations_count)
            .map(|i| {
                let fund = match kind {
                    LegKind::Failing => UNFUNDED_FUND,
                    _ => i + 1,
                };
                json!({"allocation_id": (i + 1).to_string(), "account": format!("{im}-FUND-{fund:03}"), "quantity": per_allocation})
            })
            .collect();
        let cents: u64 = self.rng.random_range(1_000..=50_000);
        let block = json!({
            "trade_ref": format!("{}-{:08}", self.prefix, self.next),
            "im_id": im,
            "broker_id": broker,
            "side": if self.rng.random::<bool>() { "BUY" } else { "SELL" },
            "security": SECURITIES[self.rng.random_range(0..SECURITIES.len())],
            "quantity": quantity,
            "price": format!("{}.{:02}00", cents / 100, cents % 100),
            "currency": "USD",
            "trade_date": self.trade_date.to_string(),
            // Same-day settlement, so the local stack settles what it matches while you watch.
            "settlement_date": self.trade_date.to_string(),
            "allocations": allocations,
        });
        let mut broker_leg = block.clone();
        broker_leg
            .as_object_mut()
            .expect("object")
            .remove("allocations");
        let (im_leg, broker_leg) = match kind {
            LegKind::Matching | LegKind::Failing => (block, Some(broker_leg)),
            LegKind::Mismatching => {
                broker_leg["quantity"] = json!(quantity + 100);
                (block, Some(broker_leg))
            }
            LegKind::Unmatched => (block, None),
            LegKind::Invalid => {
                let mut bad = block;
                let security = bad["security"].as_str().expect("string").to_owned();
                let wrong_digit = (Isin::check_digit(&security[..11]) + 1) % 10;
                bad["security"] = json!(format!("{}{wrong_digit}", &security[..11]));
                (bad, None)
            }
        };
        PlannedTrade {
            kind,
            im,
            broker,
            im_leg,
            broker_leg,
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::{ParticipantId, TradeBlock};

    use super::*;

    fn factory(mix: Mix) -> TradeFactory {
        TradeFactory::new(
            7,
            mix,
            vec!["IM-ALPHA".into()],
            vec!["BR-NORTH".into()],
            "T",
        )
    }

    #[test]
    fn generated_legs_validate_exactly_when_meant_to() {
        let mut factory = factory(Mix::default());
        let im = ParticipantId::parse("IM-ALPHA").unwrap();
        let broker = ParticipantId::parse("BR-NORTH").unwrap();
        for _ in 0..500 {
            let trade = factory.next_trade();
            let valid = TradeBlock::parse(&trade.im_leg, &im).is_ok();
            assert_eq!(valid, trade.kind != LegKind::Invalid, "{trade:?}");
            if let Some(leg) = &trade.broker_leg {
                TradeBlock::parse(leg, &broker).unwrap();
            }
        }
    }

    /// The local reference data must fit what the generator sends: matching trades settle, failing
    /// ones fail for lack of cash or securities.
    #[test]
    fn the_local_reference_data_settles_exactly_the_trades_meant_to_settle() {
        use keel_ledger::{Instruction, Ledger, ReferenceData};

        // Embedded, not read by a path fixed at build time: a test binary may be reused from a
        // build in another checkout (the target dir is shared) that no longer exists.
        let reference =
            ReferenceData::from_json(include_str!("../../../deploy/local/reference-data.json"))
                .unwrap();
        let mix: Mix = "matching=0.9,failing=0.1".parse().unwrap();
        let mut factory = TradeFactory::new(
            11,
            mix,
            vec!["IM-ALPHA".into(), "IM-BETA".into()],
            vec!["BR-NORTH".into(), "BR-SOUTH".into()],
            "T",
        );
        let mut ledger = Ledger::opened(&reference);
        let (mut settled, mut failed) = (0, 0);
        for _ in 0..2_000 {
            let trade = factory.next_trade();
            let im = ParticipantId::parse(&trade.im).unwrap();
            let block = TradeBlock::parse(&trade.im_leg, &im).unwrap();
            for allocation in &block.allocations {
                let instruction = Instruction {
                    instruction_id: uuid::Uuid::new_v4(),
                    im_id: block.im_id.clone(),
                    broker_id: block.broker_id.clone(),
                    side: block.side,
                    security: block.security.clone(),
                    quantity: allocation.quantity,
                    price: block.price,
                    currency: block.currency.clone(),
                    fund_account: allocation.account.clone(),
                };
                match (trade.kind, ledger.settle(&instruction, &reference)) {
                    (LegKind::Matching, Ok(_)) => settled += 1,
                    (LegKind::Failing, Err(error)) => {
                        assert!(error.to_string().starts_with("insufficient"), "{error}");
                        failed += 1;
                    }
                    (kind, outcome) => panic!("{kind:?} trade {trade:?}: {outcome:?}"),
                }
            }
        }
        assert!(
            settled > 1_000 && failed > 50,
            "settled {settled}, failed {failed}"
        );
    }

    #[test]
    fn the_mix_is_parsed_and_followed() {
        let mix: Mix = "matching=1,invalid=0".parse().unwrap();
        let mut factory = factory(mix);
        assert!((0..100).all(|_| factory.next_trade().kind == LegKind::Matching));
        assert!("matching=2".parse::<Mix>().is_err());
        assert!("other=0.5".parse::<Mix>().is_err());
    }
}
