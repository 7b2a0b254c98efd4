//! Committed events: their type names (the field names of
//! `r3mes.chain.v1.Event`), the addresses they name, and the filter of
//! `SubscribeEvents`. The producer publishes each committed block's events
//! on a broadcast channel; each subscriber filters its own copy.

use r3mes_chain::proto::{Event, event::Kind};

use crate::proto::{BlockEvent, SubscribeEventsRequest};

/// Every event type name, in field order.
pub const EVENT_TYPES: [&str; 15] = [
    "transfer",
    "stake",
    "gradient_stored",
    "round_started",
    "dataset",
    "challenge_issued",
    "challenge_closed",
    "slashed",
    "replica_registered",
    "pin",
    "verification",
    "model_registered",
    "trace_recorded",
    "record_expired",
    "unpin",
];

/// The type name of an event ("" if it carries no kind).
pub fn type_name(event: &Event) -> &'static str {
    let Some(kind) = &event.kind else { return "" };
    match kind {
        Kind::Transfer(_) => "transfer",
        Kind::Stake(_) => "stake",
        Kind::GradientStored(_) => "gradient_stored",
        Kind::RoundStarted(_) => "round_started",
        Kind::Dataset(_) => "dataset",
        Kind::ChallengeIssued(_) => "challenge_issued",
        Kind::ChallengeClosed(_) => "challenge_closed",
        Kind::Slashed(_) => "slashed",
        Kind::ReplicaRegistered(_) => "replica_registered",
        Kind::Pin(_) => "pin",
        Kind::Verification(_) => "verification",
        Kind::ModelRegistered(_) => "model_registered",
        Kind::TraceRecorded(_) => "trace_recorded",
        Kind::RecordExpired(_) => "record_expired",
        Kind::Unpin(_) => "unpin",
    }
}

/// The bech32 addresses an event names.
pub fn addresses(event: &Event) -> Vec<&str> {
    let Some(kind) = &event.kind else {
        return Vec::new();
    };
    match kind {
        Kind::Transfer(e) => vec![&e.from, &e.to],
        Kind::Stake(e) => vec![&e.address],
        Kind::GradientStored(e) => vec![&e.miner],
        Kind::Dataset(e) => vec![&e.actor],
        Kind::ChallengeIssued(e) => vec![&e.target, &e.challenger],
        Kind::ChallengeClosed(e) => vec![&e.target],
        Kind::Slashed(e) => vec![&e.address, &e.beneficiary],
        Kind::ReplicaRegistered(e) => vec![&e.miner],
        Kind::Pin(e) => vec![&e.pinner],
        Kind::Verification(e) => vec![&e.validator],
        Kind::RoundStarted(_)
        | Kind::ModelRegistered(_)
        | Kind::TraceRecorded(_)
        | Kind::RecordExpired(_)
        | Kind::Unpin(_) => Vec::new(),
    }
    .into_iter()
    .map(String::as_str)
    .filter(|a| !a.is_empty())
    .collect()
}

/// A subscriber's filter, checked once when it subscribes.
#[derive(Debug, Clone)]
pub struct Filter {
    types: Vec<String>,
    address: Option<String>,
}

impl Filter {
    /// The filter of a request; fails on an unknown type name or an
    /// address that is not a valid bech32 `remes` address.
    pub fn new(request: &SubscribeEventsRequest) -> Result<Self, String> {
        for t in &request.types {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "unknown event type {t:?}; known: {}",
                    EVENT_TYPES.join(", ")
                ));
            }
        }
        let address = if request.address.is_empty() {
            None
        } else {
            r3mes_chain::Address::parse(&request.address).map_err(|e| format!("address: {e}"))?;
            Some(request.address.clone())
        };
        Ok(Filter {
            types: request.types.clone(),
            address,
        })
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &BlockEvent) -> bool {
        if !self.types.is_empty() && !self.types.contains(&event.r#type) {
            return false;
        }
        match (&self.address, &event.event) {
            (None, _) => true,
            (Some(a), Some(e)) => addresses(e).contains(&a.as_str()),
            (Some(_), None) => false,
        }
    }
}

/// Wraps a committed event for subscribers.
pub fn block_event(height: u64, tx_hash: Option<&[u8; 32]>, event: &Event) -> BlockEvent {
    BlockEvent {
        height,
        tx_hash: tx_hash.map(hex::encode).unwrap_or_default(),
        r#type: type_name(event).to_owned(),
        event: Some(event.clone()),
    }
}

#[cfg(test)]
mod tests {
    use r3mes_chain::proto::{EvGradientStored, EvTransfer, EvUnpin};

    use super::*;

    const A: &str = "remes1ygwcssy0vk8uznsdr2x4uqfufn5xf9pz4ysm92";
    const B: &str = "remes1a8g45grxtr692cqrd3ff8nqlueav5mt3e790ra";

    fn wrap(kind: Kind) -> BlockEvent {
        block_event(7, None, &Event { kind: Some(kind) })
    }

    #[test]
    fn filters_select_by_type_and_named_address() {
        let transfer = wrap(Kind::Transfer(EvTransfer {
            from: A.into(),
            to: B.into(),
            amount: "1".into(),
        }));
        let gradient = wrap(Kind::GradientStored(EvGradientStored {
            miner: A.into(),
            ..Default::default()
        }));
        let unpin = wrap(Kind::Unpin(EvUnpin { cid: "Qm".into() }));
        assert_eq!(transfer.r#type, "transfer");
        assert!(transfer.tx_hash.is_empty());
        let filter = |types: &[&str], address: &str| {
            Filter::new(&SubscribeEventsRequest {
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                address: address.into(),
            })
        };
        let all = filter(&[], "").unwrap();
        assert!(
            [&transfer, &gradient, &unpin]
                .iter()
                .all(|e| all.matches(e))
        );
        let to_b = filter(&[], B).unwrap();
        assert!(to_b.matches(&transfer));
        assert!(!to_b.matches(&gradient));
        assert!(!to_b.matches(&unpin));
        let gradients_of_a = filter(&["gradient_stored"], A).unwrap();
        assert!(gradients_of_a.matches(&gradient));
        assert!(!gradients_of_a.matches(&transfer));
        let err = filter(&["gradient"], "").unwrap_err();
        assert!(err.contains("unknown event type \"gradient\""), "{err}");
        assert!(
            filter(&[], "remes1bad")
                .unwrap_err()
                .starts_with("address:")
        );
    }

    #[test]
    fn type_names_follow_the_event_fields_in_order() {
        let kinds = [
            Kind::Transfer(Default::default()),
            Kind::Stake(Default::default()),
            Kind::GradientStored(Default::default()),
            Kind::RoundStarted(Default::default()),
            Kind::Dataset(Default::default()),
            Kind::ChallengeIssued(Default::default()),
            Kind::ChallengeClosed(Default::default()),
            Kind::Slashed(Default::default()),
            Kind::ReplicaRegistered(Default::default()),
            Kind::Pin(Default::default()),
            Kind::Verification(Default::default()),
            Kind::ModelRegistered(Default::default()),
            Kind::TraceRecorded(Default::default()),
            Kind::RecordExpired(Default::default()),
            Kind::Unpin(Default::default()),
        ];
        let events: Vec<_> = kinds.into_iter().map(|k| Event { kind: Some(k) }).collect();
        let names: Vec<_> = events.iter().map(type_name).collect();
        assert_eq!(names, EVENT_TYPES);
        // The same names as the keeper gives the ABCI adapter's events.
        for e in &events {
            let (keeper_name, _) = r3mes_chain::exec::event_parts(e).unwrap();
            assert_eq!(keeper_name, type_name(e));
        }
        assert_eq!(type_name(&Event { kind: None }), "");
    }
}
