//! Named bounds on everything a client can make grow (DESIGN.md §4.5).
//!
//! They apply where a client's operation enters ([`crate::Value::apply`]). Merges never
//! refuse a state for being large (DESIGN.md §4.7: repair and handoff must move whatever
//! they are given); decoders are bounded by the frame they read from.

use std::fmt;

/// Largest set member, in bytes.
pub const MEMBER_BYTES_MAX: usize = 1024;
/// Most members in one set (top-level or nested in a map).
pub const SET_MEMBERS_MAX: usize = 1 << 20;
/// Most fields in one map object, counting nested maps' fields.
pub const MAP_FIELDS_MAX: usize = 1024;
/// Deepest nesting of maps inside a map (a top-level map is depth 1).
pub const MAP_DEPTH_MAX: usize = 8;
/// Longest map field name, in bytes.
pub const FIELD_NAME_BYTES_MAX: usize = 256;
/// Largest register or multi-value register value, in bytes.
pub const REGISTER_BYTES_MAX: usize = 1 << 20;
/// Most siblings a multi-value register may hold after a client's write.
pub const SIBLINGS_MAX: usize = 64;
/// Most removes waiting for their context (see [`crate::Set`]) in one object.
pub const DEFERRED_REMOVES_MAX: usize = 1024;
/// Most items (members, field operations) in one operation.
pub const OP_ITEMS_MAX: usize = 4096;

/// Which bound an operation ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bound {
    /// [`MEMBER_BYTES_MAX`]
    MemberBytes,
    /// [`SET_MEMBERS_MAX`]
    SetMembers,
    /// [`MAP_FIELDS_MAX`]
    MapFields,
    /// [`MAP_DEPTH_MAX`]
    MapDepth,
    /// [`FIELD_NAME_BYTES_MAX`]
    FieldNameBytes,
    /// [`REGISTER_BYTES_MAX`]
    RegisterBytes,
    /// [`SIBLINGS_MAX`]
    Siblings,
    /// [`DEFERRED_REMOVES_MAX`]
    DeferredRemoves,
    /// [`OP_ITEMS_MAX`]
    OpItems,
}

impl Bound {
    /// The limit's value.
    pub const fn max(self) -> usize {
        match self {
            Bound::MemberBytes => MEMBER_BYTES_MAX,
            Bound::SetMembers => SET_MEMBERS_MAX,
            Bound::MapFields => MAP_FIELDS_MAX,
            Bound::MapDepth => MAP_DEPTH_MAX,
            Bound::FieldNameBytes => FIELD_NAME_BYTES_MAX,
            Bound::RegisterBytes => REGISTER_BYTES_MAX,
            Bound::Siblings => SIBLINGS_MAX,
            Bound::DeferredRemoves => DEFERRED_REMOVES_MAX,
            Bound::OpItems => OP_ITEMS_MAX,
        }
    }

    /// Checks `size` against the bound.
    pub(crate) fn check(self, size: usize) -> Result<(), crate::ApplyError> {
        if size > self.max() {
            return Err(crate::ApplyError::TooLarge {
                bound: self,
                size,
                max: self.max(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Bound::MemberBytes => "set member bytes",
            Bound::SetMembers => "set members",
            Bound::MapFields => "map fields",
            Bound::MapDepth => "map nesting depth",
            Bound::FieldNameBytes => "field name bytes",
            Bound::RegisterBytes => "register bytes",
            Bound::Siblings => "multi-value register siblings",
            Bound::DeferredRemoves => "deferred removes",
            Bound::OpItems => "items in one operation",
        };
        f.write_str(name)
    }
}
