//! Multi-value register: concurrent writes are kept as siblings.

use crate::causal::{CausalContext, InvalidState};
use crate::dotstore::{DotFun, DotStore};
use crate::error::ApplyError;
use crate::limits::Bound;
use crate::{Crdt, Replica};

/// An operation on a multi-value register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MvRegOp {
    /// Writes a value, superseding exactly the siblings `context` observed. Without a
    /// context the write becomes one more sibling.
    Write {
        /// The bytes written.
        value: Vec<u8>,
        /// The context of the read this write is based on.
        context: Option<CausalContext>,
    },
}

/// A multi-value register with dotted version vectors (Dynamo's client-side resolution).
///
/// Each sibling sits under the dot of the write that made it. A read returns the siblings
/// and the context; a write carrying that context supersedes exactly what the read saw,
/// wherever the write lands, and stays concurrent with everything else.
///
/// Laws: the dot-store join, so a join; a write's delta is the new sibling plus the
/// context it supersedes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MvReg {
    siblings: DotFun<Box<[u8]>>,
    ctx: CausalContext,
}

impl MvReg {
    /// The siblings, in dot order.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.siblings.iter().map(|(_, v)| &**v)
    }

    /// The siblings with their dots.
    pub fn siblings(&self) -> &DotFun<Box<[u8]>> {
        &self.siblings
    }

    /// The context a client passes back with its next write.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Rebuilds a register from decoded parts.
    pub fn from_parts(
        siblings: DotFun<Box<[u8]>>,
        ctx: CausalContext,
    ) -> Result<Self, InvalidState> {
        if siblings.iter().any(|(d, _)| !ctx.contains(d)) {
            return Err(InvalidState("multi-value register dot outside its context"));
        }
        Ok(MvReg { siblings, ctx })
    }
}

impl Crdt for MvReg {
    type Op = MvRegOp;

    fn reset(&mut self, _replica: Replica) -> Self {
        let observed = CausalContext::from_dots(self.siblings.iter().map(|(d, _)| d));
        let delta = MvReg {
            siblings: DotFun::default(),
            ctx: observed,
        };
        self.merge(&delta);
        delta
    }

    fn is_bottom(&self) -> bool {
        self.siblings.is_empty()
    }

    fn merge(&mut self, other: &Self) {
        self.siblings.join(&self.ctx, &other.siblings, &other.ctx);
        self.ctx.join(&other.ctx);
    }

    fn apply(&mut self, op: &MvRegOp, replica: Replica) -> Result<Self, ApplyError> {
        let MvRegOp::Write { value, context } = op;
        Bound::RegisterBytes.check(value.len())?;
        let superseded = context.clone().unwrap_or_default();
        let kept = self
            .siblings
            .iter()
            .filter(|(d, _)| !superseded.contains(*d))
            .count();
        Bound::Siblings.check(kept + 1)?;
        let dot = self
            .ctx
            .next_dot(replica.actor)
            .ok_or(ApplyError::DotsExhausted)?;
        let mut ctx = superseded;
        ctx.insert(dot);
        let delta = MvReg {
            siblings: DotFun::single(dot, value.as_slice().into()),
            ctx,
        };
        self.merge(&delta);
        Ok(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Timestamp};

    fn write(reg: &mut MvReg, actor: u64, value: &str, context: Option<CausalContext>) {
        let op = MvRegOp::Write {
            value: value.into(),
            context,
        };
        reg.apply(
            &op,
            Replica {
                actor: Actor(actor),
                now: Timestamp::ZERO,
            },
        )
        .unwrap();
    }

    fn values(reg: &MvReg) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = reg.values().collect();
        v.sort();
        v
    }

    #[test]
    fn concurrent_writes_are_siblings_and_a_contextual_write_resolves_them() {
        let (mut a, mut b) = (MvReg::default(), MvReg::default());
        write(&mut a, 1, "left", None);
        write(&mut b, 2, "right", None);
        a.merge(&b);
        assert_eq!(values(&a), vec![&b"left"[..], &b"right"[..]]);
        let ctx = a.context().clone();
        // The resolving write lands on a replica that has only seen one sibling.
        let mut c = b.clone();
        write(&mut c, 3, "both", Some(ctx));
        a.merge(&c);
        assert_eq!(values(&a), vec![&b"both"[..]]);
    }

    #[test]
    fn write_supersedes_only_what_it_saw() {
        let mut a = MvReg::default();
        write(&mut a, 1, "v1", None);
        let seen = a.context().clone();
        let mut b = a.clone();
        write(&mut b, 2, "concurrent", None);
        write(&mut a, 1, "v2", Some(seen));
        a.merge(&b);
        assert_eq!(values(&a), vec![&b"concurrent"[..], &b"v2"[..]]);
    }
}
