//! Enable-wins flag.

use crate::causal::{CausalContext, InvalidState};
use crate::dotstore::{DotSet, DotStore};
use crate::error::ApplyError;
use crate::{Crdt, Replica};

/// An operation on a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    /// Sets the flag. Wins over every concurrent disable.
    Enable,
    /// Clears the enables this replica has observed.
    Disable,
}

/// An enable-wins flag: on while any enable is not yet observed by a disable.
///
/// Laws: the dot-store join (see [`crate::Set`]), so a join; an enable's delta is the new
/// dot plus the dots it supersedes, a disable's delta is the dots it clears.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flag {
    dots: DotSet,
    ctx: CausalContext,
}

impl Flag {
    /// Whether the flag is on.
    pub fn value(&self) -> bool {
        !self.dots.is_empty()
    }

    /// The enables that hold the flag on.
    pub fn dots(&self) -> &DotSet {
        &self.dots
    }

    /// Every dot this replica has seen.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Rebuilds a flag from decoded parts.
    pub fn from_parts(dots: DotSet, ctx: CausalContext) -> Result<Self, InvalidState> {
        if dots.iter().any(|d| !ctx.contains(d)) {
            return Err(InvalidState("flag dot outside its context"));
        }
        Ok(Flag { dots, ctx })
    }
}

impl Crdt for Flag {
    type Op = FlagOp;

    fn reset(&mut self, _replica: Replica) -> Self {
        let delta = Flag {
            dots: DotSet::default(),
            ctx: CausalContext::from_dots(self.dots.iter()),
        };
        self.merge(&delta);
        delta
    }

    fn is_bottom(&self) -> bool {
        !self.value()
    }

    fn merge(&mut self, other: &Self) {
        self.dots.join(&self.ctx, &other.dots, &other.ctx);
        self.ctx.join(&other.ctx);
    }

    fn apply(&mut self, op: &FlagOp, replica: Replica) -> Result<Self, ApplyError> {
        let mut delta = Flag {
            dots: DotSet::default(),
            ctx: CausalContext::from_dots(self.dots.iter()),
        };
        if *op == FlagOp::Enable {
            let dot = self
                .ctx
                .next_dot(replica.actor)
                .ok_or(ApplyError::DotsExhausted)?;
            delta.dots = DotSet::single(dot);
            delta.ctx.insert(dot);
        }
        self.merge(&delta);
        Ok(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Timestamp};

    fn at(actor: u64) -> Replica {
        Replica {
            actor: Actor(actor),
            now: Timestamp::ZERO,
        }
    }

    #[test]
    fn enable_wins_over_concurrent_disable() {
        let mut a = Flag::default();
        a.apply(&FlagOp::Enable, at(1)).unwrap();
        let mut b = a.clone();
        a.apply(&FlagOp::Disable, at(1)).unwrap();
        b.apply(&FlagOp::Enable, at(2)).unwrap();
        a.merge(&b);
        assert!(a.value());
    }

    #[test]
    fn observed_disable_wins() {
        let mut a = Flag::default();
        a.apply(&FlagOp::Enable, at(1)).unwrap();
        let mut b = a.clone();
        b.apply(&FlagOp::Disable, at(2)).unwrap();
        a.merge(&b);
        assert!(!a.value());
    }
}
