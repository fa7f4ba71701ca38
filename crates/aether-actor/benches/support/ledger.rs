//! The actor of the actor benchmarks (`jetstream_actors`, `cluster_actors`) and of the
//! `idle_actors_probe` example: a ledger of deposits, one event per command, carrying the
//! benchmark event's data.

use aether_actor::{Actor, Decision};
use serde::{Deserialize, Serialize};

pub(crate) struct Ledger;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Totals {
    pub(crate) count: u64,
    pub(crate) amount: u64,
}

/// The benchmark event's data (`measure::bench_event`): about 140 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Deposit {
    pub(crate) amount: u64,
    pub(crate) currency: String,
    pub(crate) reference: String,
    pub(crate) note: String,
}

impl Deposit {
    pub(crate) fn numbered(n: u64) -> Self {
        Self {
            amount: n * 7 % 1000,
            currency: "EUR".into(),
            reference: format!("invoice-{n:08}"),
            note: "monthly subscription renewal, card ending 4242".into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Booked {
    Deposited(Deposit),
}

impl Actor for Ledger {
    const ACTOR_TYPE: &'static str = "ledger";
    type State = Totals;
    type Command = Deposit;
    type Event = Booked;
    type Reply = u64;
    type Rejection = ();
    type Query = ();
    type QueryReply = Totals;

    fn decide(&self, totals: &Totals, deposit: Deposit) -> Result<Decision<Self>, ()> {
        Ok(Decision::new(
            vec![Booked::Deposited(deposit)],
            totals.count + 1,
        ))
    }

    fn apply(&self, totals: &mut Totals, Booked::Deposited(deposit): &Booked) {
        totals.count += 1;
        totals.amount += deposit.amount;
    }

    fn query(&self, totals: &Totals, (): ()) -> Totals {
        totals.clone()
    }
}
