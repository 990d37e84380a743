//! How many replica slots each node gets: an apportionment of the `n_max x Q` slots
//! proportional to capacity, within the bounds any valid placement must respect.
//!
//! # Bounds
//!
//! - A node holds at most one replica of a partition, so at most `Q` slots.
//! - With `Z >= n_max` storage zones, every partition has its replicas in `n_max`
//!   distinct zones, so a zone holds at most `Q` slots.
//! - With `Z < n_max`, every partition has a replica in every zone, so a zone holds at
//!   least `Q` slots.
//!
//! # Method
//!
//! Webster/Sainte-Laguë, seat by seat: each slot goes to the node with the highest
//! `capacity / (2 x slots + 1)` among nodes and zones below their caps. When `Z < n_max`,
//! each zone first receives its `Q` floor slots among its own nodes the same way. This is
//! the bounded divisor method: nodes whose bounds do not bind end up proportional to
//! capacity with one common divisor (each within a slot of `capacity / divisor`); capped
//! nodes and zones hold their cap, floored zones their floor, split proportionally inside.
//!
//! Ties go to a node that held more slots than it has so far in the previous assignment
//! (so rounding does not move data for nothing: recomputing an unchanged roster gives the
//! same quotas), then to the lower [`NodeId`](crate::NodeId). Comparisons
//! are exact integer cross-products: no floating point, identical on every machine.
//!
//! Any quotas that respect the bounds above can be placed (see `assign`), so this step
//! decides the shares and the flow step only decides where.

/// A storage node (capacity > 0) as apportionment sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    /// Index of the member's zone in the sorted list of storage zones.
    pub(crate) zone: usize,
    /// Its capacity, > 0.
    pub(crate) capacity: u64,
    /// Slots it held in the previous assignment (tie-break only).
    pub(crate) previous: u32,
}

/// Slots per member (same order as `members`, which is sorted by node id), or `None` if
/// the bounds leave slots unplaceable; the caller checks feasibility first
/// (`members.len() >= n` and every zone has a member), so `None` means a bug.
pub(crate) fn quotas(members: &[Member], zones: usize, q: u32, n: u32) -> Option<Vec<u32>> {
    let mut state = Seats {
        members,
        seats: vec![0; members.len()],
        zone_seats: vec![0; zones],
        node_cap: q,
        zone_cap: if zones >= n as usize { q } else { n * q },
    };
    if zones < n as usize {
        for zone in 0..zones {
            for _ in 0..q {
                state.give(|m| m.zone == zone)?;
            }
        }
    }
    let placed: u32 = state.zone_seats.iter().sum();
    for _ in placed..n * q {
        state.give(|_| true)?;
    }
    Some(state.seats)
}

struct Seats<'a> {
    members: &'a [Member],
    seats: Vec<u32>,
    zone_seats: Vec<u32>,
    node_cap: u32,
    zone_cap: u32,
}

impl Seats<'_> {
    /// Gives one slot to the best eligible member among those `within` accepts.
    fn give(&mut self, within: impl Fn(&Member) -> bool) -> Option<()> {
        let mut best: Option<usize> = None;
        for (i, member) in self.members.iter().enumerate() {
            let eligible = within(member)
                && self.seats[i] < self.node_cap
                && self.zone_seats[member.zone] < self.zone_cap;
            if eligible && best.is_none_or(|b| self.ahead(i, b)) {
                best = Some(i);
            }
        }
        let winner = best?;
        self.seats[winner] += 1;
        self.zone_seats[self.members[winner].zone] += 1;
        Some(())
    }

    /// Whether the next slot for `i` is one it held in the previous assignment.
    fn refills(&self, i: usize) -> bool {
        self.seats[i] < self.members[i].previous
    }

    /// Whether member `a` has a strictly better claim to the next slot than `b` (`a > b`
    /// by index, so equal claims keep the lower node id).
    fn ahead(&self, a: usize, b: usize) -> bool {
        let claim = |i: usize| {
            let divisor = 2 * u128::from(self.seats[i]) + 1;
            (u128::from(self.members[i].capacity), divisor)
        };
        let ((ca, da), (cb, db)) = (claim(a), claim(b));
        match (ca * db).cmp(&(cb * da)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            // The member that held this slot before keeps it.
            std::cmp::Ordering::Equal => self.refills(a) && !self.refills(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(usize, u64)]) -> Vec<Member> {
        spec.iter()
            .map(|&(zone, capacity)| Member {
                zone,
                capacity,
                previous: 0,
            })
            .collect()
    }

    #[test]
    fn equal_capacities_split_evenly() {
        let m = members(&[(0, 1), (0, 1), (0, 1), (0, 1)]);
        assert_eq!(quotas(&m, 1, 16, 3), Some(vec![12, 12, 12, 12]));
    }

    #[test]
    fn capacity_proportional_with_lower_ids_taking_ties() {
        let m = members(&[(0, 1), (0, 2), (0, 1), (0, 1), (0, 1)]);
        // 48 slots over capacity 6: exactly 8 per unit.
        assert_eq!(quotas(&m, 1, 16, 3), Some(vec![8, 16, 8, 8, 8]));
    }

    #[test]
    fn a_node_never_exceeds_one_slot_per_partition() {
        let m = members(&[(0, 100), (0, 1), (0, 1), (0, 1)]);
        let got = quotas(&m, 1, 16, 3).expect("feasible");
        assert_eq!(got, vec![16, 11, 11, 10]);
    }

    #[test]
    fn a_zone_with_n_or_more_zones_holds_at_most_q() {
        // Zone 0 has three nodes but may hold only one replica per partition.
        let m = members(&[(0, 1), (0, 1), (0, 1), (1, 1), (2, 1)]);
        let got = quotas(&m, 3, 16, 3).expect("feasible");
        assert_eq!(got, vec![6, 5, 5, 16, 16]);
    }

    #[test]
    fn with_fewer_zones_than_replicas_every_zone_holds_at_least_q() {
        // Zone 1's single small node must still be in every partition.
        let m = members(&[(0, 10), (0, 10), (0, 10), (1, 1)]);
        let got = quotas(&m, 2, 16, 3).expect("feasible");
        assert_eq!(got, vec![11, 11, 10, 16]);
    }

    #[test]
    fn previous_holdings_break_ties() {
        let mut m = members(&[(0, 1), (0, 1), (0, 1), (0, 1), (0, 1)]);
        m[4].previous = 10;
        // 48 over five equal nodes: three get 10, two get 9; the previous holder is first.
        assert_eq!(quotas(&m, 1, 16, 3), Some(vec![10, 10, 9, 9, 10]));
    }

    #[test]
    fn too_few_nodes_leave_slots_unplaced() {
        let m = members(&[(0, 1), (0, 1)]);
        assert_eq!(quotas(&m, 1, 16, 3), None);
    }
}
