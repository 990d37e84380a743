//! The ring's newtypes: who a node is, which partition a key lives in, where a node
//! stands, how much it holds, and which layout is current.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::ZONE_LEN_MAX;

/// A node of the cluster, stable across restarts and address changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One of the `Q` partitions of the key space (`0..Q`, `Q <= 4096`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u16);

impl PartitionId {
    /// The partition's position in per-partition tables.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A failure domain (a datacenter or a rack): replicas of a partition go to different
/// zones first.
///
/// Between 1 and [`ZONE_LEN_MAX`] bytes of UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Zone(String);

impl Zone {
    /// Checks the name's length.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidZone> {
        let name = name.into();
        if name.is_empty() || name.len() > ZONE_LEN_MAX {
            return Err(InvalidZone { len: name.len() });
        }
        Ok(Self(name))
    }

    /// The zone's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Zone {
    type Error = InvalidZone;

    fn try_from(name: String) -> Result<Self, InvalidZone> {
        Self::new(name)
    }
}

impl From<Zone> for String {
    fn from(zone: Zone) -> String {
        zone.0
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A zone name that is empty or longer than [`ZONE_LEN_MAX`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a zone name must be 1 to {ZONE_LEN_MAX} bytes long, not {len}")]
pub struct InvalidZone {
    /// The rejected name's length in bytes.
    pub len: usize,
}

/// How much a node holds, in any unit the operator likes (the same for every node).
///
/// Placement gives each node a share of replica slots proportional to its capacity;
/// `Capacity(0)` marks a gateway that coordinates requests but stores no replicas.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Capacity(pub u64);

/// A committed layout's number; every commit adds one. Layouts merge to the higher one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LayoutVersion(pub u64);

impl LayoutVersion {
    /// The version after this one, or `None` at `u64::MAX` (a peer may send any number).
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for LayoutVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
