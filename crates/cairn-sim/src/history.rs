//! What clients did and saw, and the checkers that judge a converged cluster by it.
//!
//! The checkers only use what a client can know (invoke and complete times, outcomes, what
//! its own reads returned) and the final converged values, so they work the same on a
//! history recorded from real processes.

use std::collections::{BTreeMap, BTreeSet};

use cairn_crdt::{FieldKey, FieldType, FieldValue, Value};

/// How an operation ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Refused before anything was applied (bad options, type mismatch, a bound).
    Failed,
    /// No answer, or a quorum error after the coordinator applied it: it may or may not
    /// take effect.
    Indeterminate,
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Counter increment.
    Incr(i64),
    /// Set add of a unique element.
    SetAdd(u64),
    /// Set remove of an element the client's preceding read returned.
    SetRemove(u64),
    /// Map update: increment field `n` (counter) and add a unique element to `tags` (set).
    MapUpdate {
        /// The increment.
        by: i64,
        /// The element.
        tag: u64,
    },
    /// Register assignment of a unique value.
    RegPut(u64),
    /// Multi-value register write of a unique value with the context of a read that saw
    /// `saw`.
    MvPut {
        /// The value written.
        value: u64,
        /// The siblings the preceding read returned.
        saw: Vec<u64>,
    },
}

/// One operation in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The client that issued it.
    pub client: u32,
    /// The key.
    pub key: String,
    /// What it did.
    pub action: Action,
    /// When it was sent (simulated ms).
    pub invoke_ms: u64,
    /// When its answer came (or the client gave up).
    pub complete_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// A broken guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// What went wrong.
    pub what: String,
}

/// Decodes the 8-byte big-endian ids the workload writes.
pub fn id_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Checks every key of the history against its converged value.
pub fn check(history: &[Entry], finals: &BTreeMap<String, Option<Value>>) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in history {
        by_key.entry(&e.key).or_default().push(e);
    }
    let mut out = Vec::new();
    for (key, entries) in by_key {
        let value = finals.get(key).cloned().flatten();
        let mut found = check_key(&entries, value.as_ref());
        out.extend(found.drain(..).map(|what| Violation {
            key: key.to_string(),
            what,
        }));
    }
    out
}

fn check_key(entries: &[&Entry], value: Option<&Value>) -> Vec<String> {
    match entries.first().map(|e| &e.action) {
        Some(Action::Incr(_)) => check_counter(entries, counter_of(value)),
        Some(Action::SetAdd(_) | Action::SetRemove(_)) => check_set(entries, &set_of(value)),
        Some(Action::MapUpdate { .. }) => check_map(entries, value),
        Some(Action::RegPut(_)) => check_register(entries, value),
        Some(Action::MvPut { .. }) => check_mvreg(entries, value),
        None => Vec::new(),
    }
}

fn counter_of(value: Option<&Value>) -> Result<i64, String> {
    match value {
        None => Ok(0),
        Some(Value::Counter(c)) => c.value().map_err(|e| e.to_string()),
        Some(other) => Err(format!(
            "expected a counter, found a {}",
            other.value_type()
        )),
    }
}

fn set_of(value: Option<&Value>) -> BTreeSet<u64> {
    match value {
        Some(Value::Set(s)) => s.members().filter_map(id_of).collect(),
        _ => BTreeSet::new(),
    }
}

/// Counter: the final value lies between the acknowledged sum and that sum plus every
/// indeterminate increment that may have landed.
fn check_counter(entries: &[&Entry], value: Result<i64, String>) -> Vec<String> {
    let increments = entries.iter().filter_map(|e| match e.action {
        Action::Incr(by) => Some((by, e.outcome)),
        _ => None,
    });
    bounds_check(increments, value)
}

fn bounds_check(
    increments: impl Iterator<Item = (i64, Outcome)>,
    value: Result<i64, String>,
) -> Vec<String> {
    let value = match value {
        Ok(v) => i128::from(v),
        Err(e) => return vec![e],
    };
    let (mut lo, mut hi) = (0i128, 0i128);
    for (by, outcome) in increments {
        match outcome {
            Outcome::Ok => {
                lo += i128::from(by);
                hi += i128::from(by);
            }
            Outcome::Indeterminate if by < 0 => lo += i128::from(by),
            Outcome::Indeterminate => hi += i128::from(by),
            Outcome::Failed => {}
        }
    }
    if value < lo || value > hi {
        return vec![format!(
            "counter is {value}, acknowledged history allows {lo}..={hi}"
        )];
    }
    Vec::new()
}

/// Set: no acknowledged add lost, no acknowledged remove undone, no element never added.
fn check_set(entries: &[&Entry], members: &BTreeSet<u64>) -> Vec<String> {
    let mut adds: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut removes: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
    for e in entries {
        match e.action {
            Action::SetAdd(x) => {
                adds.insert(x, e.outcome);
            }
            Action::SetRemove(x) => removes.entry(x).or_default().push(e.outcome),
            _ => {}
        }
    }
    set_rules(&adds, &removes, members)
}

fn set_rules(
    adds: &BTreeMap<u64, Outcome>,
    removes: &BTreeMap<u64, Vec<Outcome>>,
    members: &BTreeSet<u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in members {
        if !matches!(adds.get(m), Some(Outcome::Ok | Outcome::Indeterminate)) {
            out.push(format!("element {m} is present but was never added"));
        }
    }
    for (x, outcome) in adds {
        let tried_remove = removes
            .get(x)
            .is_some_and(|r| r.iter().any(|o| *o != Outcome::Failed));
        let removed = removes.get(x).is_some_and(|r| r.contains(&Outcome::Ok));
        if *outcome == Outcome::Ok && !tried_remove && !members.contains(x) {
            out.push(format!("acknowledged add of {x} was lost"));
        }
        if removed && members.contains(x) {
            out.push(format!(
                "element {x} was removed (acknowledged) but came back"
            ));
        }
    }
    out
}

/// Map: field `n` obeys the counter rule, field `tags` the set rule (no removes).
fn check_map(entries: &[&Entry], value: Option<&Value>) -> Vec<String> {
    let fields = match value {
        None => BTreeMap::new(),
        Some(Value::Map(m)) => match m.value() {
            Ok(f) => f,
            Err(e) => return vec![e.to_string()],
        },
        Some(other) => return vec![format!("expected a map, found a {}", other.value_type())],
    };
    let counter = match fields.get(&FieldKey::new("n", FieldType::Counter)) {
        None => Ok(0),
        Some(FieldValue::Counter(n)) => Ok(*n),
        Some(other) => Err(format!("field n is {other:?}")),
    };
    let tags: BTreeSet<u64> = match fields.get(&FieldKey::new("tags", FieldType::Set)) {
        Some(FieldValue::Set(members)) => members.iter().filter_map(|m| id_of(m)).collect(),
        _ => BTreeSet::new(),
    };
    let updates: Vec<(i64, u64, Outcome)> = entries
        .iter()
        .filter_map(|e| match e.action {
            Action::MapUpdate { by, tag } => Some((by, tag, e.outcome)),
            _ => None,
        })
        .collect();
    let mut out = bounds_check(updates.iter().map(|&(by, _, o)| (by, o)), counter);
    let adds = updates.iter().map(|&(_, tag, o)| (tag, o)).collect();
    out.extend(set_rules(&adds, &BTreeMap::new(), &tags));
    out
}

/// Register: the final value was written (not invented), and no acknowledged write that
/// began after the winner's acknowledgement lost to it.
fn check_register(entries: &[&Entry], value: Option<&Value>) -> Vec<String> {
    let writes: Vec<(u64, &Entry)> = entries
        .iter()
        .filter_map(|e| match e.action {
            Action::RegPut(v) => Some((v, *e)),
            _ => None,
        })
        .collect();
    let final_id = match value {
        None => None,
        Some(Value::Register(r)) => r.value().and_then(id_of),
        Some(other) => {
            return vec![format!(
                "expected a register, found a {}",
                other.value_type()
            )]
        }
    };
    let Some(final_id) = final_id else {
        let acked = writes.iter().any(|(_, e)| e.outcome == Outcome::Ok);
        return if acked {
            vec!["register is empty after acknowledged writes".into()]
        } else {
            Vec::new()
        };
    };
    let Some((_, winner)) = writes.iter().find(|(v, _)| *v == final_id) else {
        return vec![format!("register holds {final_id}, which nobody wrote")];
    };
    let mut out = Vec::new();
    if winner.outcome == Outcome::Failed {
        out.push(format!("register holds {final_id}, whose write failed"));
    }
    if winner.outcome == Outcome::Ok {
        for (v, later) in &writes {
            if later.outcome == Outcome::Ok && later.invoke_ms > winner.complete_ms {
                out.push(format!("acknowledged write {v} began after {final_id} was acknowledged, yet lost to it"));
            }
        }
    }
    out
}

/// Multi-value register: every sibling was written, and every acknowledged write is
/// still a sibling unless a later write's read saw it.
fn check_mvreg(entries: &[&Entry], value: Option<&Value>) -> Vec<String> {
    let siblings: BTreeSet<u64> = match value {
        None => BTreeSet::new(),
        Some(Value::MvReg(r)) => r.values().filter_map(id_of).collect(),
        Some(other) => return vec![format!("expected an mvreg, found a {}", other.value_type())],
    };
    let mut written: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut superseded: BTreeSet<u64> = BTreeSet::new();
    for e in entries {
        if let Action::MvPut { value, saw } = &e.action {
            written.insert(*value, e.outcome);
            if e.outcome != Outcome::Failed {
                superseded.extend(saw.iter().copied());
            }
        }
    }
    let mut out = Vec::new();
    for s in &siblings {
        if !matches!(written.get(s), Some(Outcome::Ok | Outcome::Indeterminate)) {
            out.push(format!("sibling {s} was never written"));
        }
    }
    for (v, outcome) in &written {
        if *outcome == Outcome::Ok && !siblings.contains(v) && !superseded.contains(v) {
            out.push(format!(
                "acknowledged write {v} vanished without being superseded"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        key: &str,
        action: Action,
        outcome: Outcome,
        invoke_ms: u64,
        complete_ms: u64,
    ) -> Entry {
        Entry {
            client: 0,
            key: key.into(),
            action,
            invoke_ms,
            complete_ms,
            outcome,
        }
    }

    #[test]
    fn counter_bounds_catch_lost_and_phantom_increments() {
        let h = [
            entry("c", Action::Incr(5), Outcome::Ok, 0, 1),
            entry("c", Action::Incr(-2), Outcome::Indeterminate, 0, 1),
            entry("c", Action::Incr(3), Outcome::Indeterminate, 0, 1),
        ];
        let refs: Vec<&Entry> = h.iter().collect();
        assert!(check_counter(&refs, Ok(5)).is_empty());
        assert!(check_counter(&refs, Ok(3)).is_empty());
        assert!(check_counter(&refs, Ok(8)).is_empty());
        assert!(
            !check_counter(&refs, Ok(2)).is_empty(),
            "lost the acknowledged 5"
        );
        assert!(!check_counter(&refs, Ok(9)).is_empty(), "phantom increment");
    }

    #[test]
    fn set_rules_catch_loss_resurrection_and_phantoms() {
        let adds = BTreeMap::from([(1, Outcome::Ok), (2, Outcome::Ok), (3, Outcome::Failed)]);
        let removes = BTreeMap::from([(2, vec![Outcome::Ok])]);
        assert!(set_rules(&adds, &removes, &BTreeSet::from([1])).is_empty());
        assert_eq!(
            set_rules(&adds, &removes, &BTreeSet::new()).len(),
            1,
            "lost 1"
        );
        assert_eq!(
            set_rules(&adds, &removes, &BTreeSet::from([1, 2])).len(),
            1,
            "2 came back"
        );
        assert_eq!(
            set_rules(&adds, &removes, &BTreeSet::from([1, 3])).len(),
            1,
            "3 never added"
        );
    }

    #[test]
    fn register_rule_catches_a_stale_winner() {
        let h = [
            entry("r", Action::RegPut(1), Outcome::Ok, 0, 10),
            entry("r", Action::RegPut(2), Outcome::Ok, 20, 30),
        ];
        let refs: Vec<&Entry> = h.iter().collect();
        let reg = |id: u64| {
            let mut r = cairn_crdt::Register::default();
            let at = cairn_crdt::Replica {
                actor: cairn_crdt::Actor(1),
                now: cairn_crdt::Timestamp::ZERO,
            };
            cairn_crdt::Crdt::apply(
                &mut r,
                &cairn_crdt::RegisterOp::Assign(id.to_be_bytes().to_vec()),
                at,
            )
            .unwrap();
            Value::Register(r)
        };
        assert!(check_register(&refs, Some(&reg(2))).is_empty());
        assert_eq!(check_register(&refs, Some(&reg(1))).len(), 1);
        assert_eq!(check_register(&refs, Some(&reg(9))).len(), 1);
    }
}
