//! What the layout knows about a node.

use serde::{Deserialize, Serialize};

use crate::limits::ADDR_LEN_MAX;
use crate::{Capacity, StageError, Zone};

/// A node's role in the layout: where to reach it, where it stands, how much it holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeRole {
    /// How peers reach the node (`host:port`), at most [`ADDR_LEN_MAX`] bytes.
    pub addr: String,
    /// Its failure domain.
    pub zone: Zone,
    /// Its relative storage capacity; zero for a gateway that stores no replicas.
    pub capacity: Capacity,
}

impl NodeRole {
    /// A role; see the fields.
    pub fn new(addr: impl Into<String>, zone: Zone, capacity: Capacity) -> Self {
        Self {
            addr: addr.into(),
            zone,
            capacity,
        }
    }

    /// Whether placement gives the node replicas (its capacity is non-zero).
    pub fn stores_data(&self) -> bool {
        self.capacity.0 > 0
    }

    pub(crate) fn check(&self) -> Result<(), StageError> {
        if self.addr.len() > ADDR_LEN_MAX {
            return Err(StageError::AddressTooLong {
                len: self.addr.len(),
            });
        }
        Ok(())
    }
}
