//! The CRDT laws, checked once for every type.
//!
//! Property tests and fuzz targets drive [`run`] with random histories; it applies
//! operations at several replicas, delivers deltas and states in any order with duplicates
//! and drops, and checks every law of [`Crdt`] on the way. A violation names the law and
//! shows the states involved.

use std::fmt;

use crate::{Actor, Crdt, Replica, Timestamp};

/// A law that failed, with the states that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The law's name.
    pub law: &'static str,
    /// The states involved, debug-printed.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "law `{}` broken: {}", self.law, self.detail)
    }
}

impl std::error::Error for Violation {}

fn violation<T: fmt::Debug>(law: &'static str, states: &[&T]) -> Violation {
    Violation {
        law,
        detail: format!("{states:#?}"),
    }
}

fn joined<T: Crdt>(a: &T, b: &T) -> T {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// Commutativity, associativity and idempotence on three states.
pub fn check_join<T: Crdt>(a: &T, b: &T, c: &T) -> Result<(), Violation> {
    if joined(a, b) != joined(b, a) {
        return Err(violation("commutative", &[a, b]));
    }
    if joined(&joined(a, b), c) != joined(a, &joined(b, c)) {
        return Err(violation("associative", &[a, b, c]));
    }
    if joined(a, a) != *a {
        return Err(violation("idempotent", &[a]));
    }
    Ok(())
}

/// One step of a history. `O` is an operation *template* that the caller resolves against
/// the replicas' states (say, a remove that carries the context another replica read).
#[derive(Clone, Debug)]
pub enum Step<O> {
    /// Replica `at` applies an operation.
    Apply {
        /// Which replica (taken modulo the replica count).
        at: usize,
        /// The operation template.
        op: O,
    },
    /// The `delta`-th delta made so far (modulo their count) reaches replica `to`.
    /// Deltas never delivered are dropped; delivered twice, duplicated.
    Deliver {
        /// Which delta.
        delta: usize,
        /// Which replica.
        to: usize,
    },
    /// Replica `at` resets (deletes) what it has observed.
    Reset {
        /// Which replica (taken modulo the replica count).
        at: usize,
    },
    /// Replica `to` merges the full state of replica `from`.
    Sync {
        /// The sender.
        from: usize,
        /// The receiver.
        to: usize,
    },
}

/// The outcome of a history: the replicas' converged state.
#[derive(Clone, Debug)]
pub struct Outcome<T> {
    /// The state every replica reached after the final exchange.
    pub converged: T,
    /// Operations applied (errors excluded).
    pub applied: usize,
    /// States seen along the way (replicas and deltas), for further checks.
    pub snapshots: Vec<T>,
}

/// Runs a history on `replicas` replicas and checks every law on the way:
/// the delta law after each operation, the join laws on snapshots, and convergence
/// (after a final all-to-all exchange every replica equals the join of all deltas).
///
/// `resolve(replicas, at, template)` turns a template into an operation for replica `at`;
/// `None` skips the step. Operations that fail with an error must leave the state alone.
pub fn run<T: Crdt, O>(
    replicas: usize,
    steps: &[Step<O>],
    mut resolve: impl FnMut(&[T], usize, &O) -> Option<T::Op>,
) -> Result<Outcome<T>, Violation> {
    assert!(replicas > 0, "a history needs a replica");
    let mut states = vec![T::default(); replicas];
    let mut deltas: Vec<T> = Vec::new();
    let mut snapshots: Vec<T> = Vec::new();
    let mut applied = 0;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Apply { at, op } => {
                let at = at % replicas;
                let Some(op) = resolve(&states, at, op) else {
                    continue;
                };
                let replica = replica_for(at, i);
                let before = states[at].clone();
                match states[at].apply(&op, replica) {
                    Ok(delta) => {
                        if joined(&before, &delta) != states[at] {
                            return Err(violation("delta", &[&before, &delta, &states[at]]));
                        }
                        deltas.push(delta);
                        applied += 1;
                    }
                    Err(_) if states[at] != before => {
                        return Err(violation("failed operation changed nothing", &[&before]));
                    }
                    Err(_) => {}
                }
            }
            Step::Reset { at } => {
                let at = at % replicas;
                let before = states[at].clone();
                let delta = states[at].reset(replica_for(at, i));
                if joined(&before, &delta) != states[at] {
                    return Err(violation("delta of reset", &[&before, &delta, &states[at]]));
                }
                if !states[at].is_bottom() {
                    return Err(violation("reset leaves bottom", &[&before, &states[at]]));
                }
                deltas.push(delta);
            }
            Step::Deliver { delta, to } if !deltas.is_empty() => {
                let delta = &deltas[delta % deltas.len()];
                states[to % replicas].merge(delta);
            }
            Step::Deliver { .. } => {}
            Step::Sync { from, to } => {
                let from = states[from % replicas].clone();
                states[to % replicas].merge(&from);
            }
        }
        if i % 4 == 0 {
            snapshots.push(states[i % replicas].clone());
        }
    }
    snapshots.extend(deltas.iter().take(8).cloned());
    check_snapshots(&snapshots)?;
    let mut outcome = converge(states, &deltas, applied)?;
    outcome.snapshots = snapshots;
    Ok(outcome)
}

/// A distinct actor per replica, and a clock that moves with the step number.
fn replica_for(at: usize, step: usize) -> Replica {
    let wall_ms = 1_000 + (step as u64 / 3) * 7 % 50;
    Replica {
        actor: Actor(at as u64 + 1),
        now: Timestamp {
            wall_ms,
            logical: 0,
        },
    }
}

fn check_snapshots<T: Crdt>(snapshots: &[T]) -> Result<(), Violation> {
    let n = snapshots.len();
    for i in 0..n {
        check_join(
            &snapshots[i],
            &snapshots[(i + 1) % n],
            &snapshots[(i + 2) % n],
        )?;
    }
    Ok(())
}

fn converge<T: Crdt>(
    mut states: Vec<T>,
    deltas: &[T],
    applied: usize,
) -> Result<Outcome<T>, Violation> {
    let mut all = T::default();
    for s in &states {
        all.merge(s);
    }
    for s in &mut states {
        s.merge(&all);
    }
    if let Some(odd) = states.iter().find(|s| **s != all) {
        return Err(violation("convergence", &[odd, &all]));
    }
    let mut from_deltas = T::default();
    for d in deltas {
        from_deltas.merge(d);
    }
    if from_deltas != all {
        return Err(violation(
            "deltas carry every effect",
            &[&from_deltas, &all],
        ));
    }
    Ok(Outcome {
        converged: all,
        applied,
        snapshots: Vec::new(),
    })
}
