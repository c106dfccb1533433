//! The consistent hash ring: which node runs which guild (or DM channel).
//!
//! Every node derives the same ring from the same set of live nodes: each node puts
//! [`VNODES`] points on a 64-bit circle and a key belongs to the first point at or after
//! its hash. The hash is a fixed function (the 64-bit finalizer of MurmurHash3), not
//! Rust's `Hasher`, so nodes built by different compilers agree. With 256 points per node
//! the shares stay within a few percent of even, and a node joining takes only its own
//! share from the others (about 1/(n+1) of the keys), which is what makes rebalancing
//! cheap.

use std::collections::BTreeSet;

use guildhall_runtime::addresses::reply::NodeId;

/// Points per node on the circle.
pub const VNODES: u32 = 256;

/// MurmurHash3's fmix64: a bijective mix of all 64 bits (snowflake ids differ mostly in
/// their low and middle bits; this spreads them over the whole circle).
pub fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ring {
    /// (point, node), sorted by point; ties broken by node so every node sorts alike.
    points: Vec<(u64, NodeId)>,
    nodes: BTreeSet<NodeId>,
}

impl Ring {
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> Ring {
        let nodes: BTreeSet<NodeId> = nodes.into_iter().collect();
        let mut points: Vec<(u64, NodeId)> = nodes
            .iter()
            .flat_map(|&node| (0..VNODES).map(move |i| (mix(u64::from(node) << 32 | u64::from(i)), node)))
            .collect();
        points.sort_unstable();
        Ring { points, nodes }
    }

    /// The node that owns `key` (a guild id or DM channel id); `None` on an empty ring.
    pub fn owner(&self, key: u64) -> Option<NodeId> {
        if self.points.is_empty() {
            return None;
        }
        let h = mix(key);
        let i = self.points.partition_point(|&(point, _)| point < h);
        Some(self.points[i % self.points.len()].1)
    }

    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().copied()
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.nodes.contains(&node)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guild ids as the host makes them: snowflakes minted over a day by a few workers.
    fn guild_ids(n: u64) -> Vec<u64> {
        (0..n).map(|i| ((1_000_000 + i * 8_640) << 22) | ((i % 4) << 12) | (i % 7)).collect()
    }

    fn shares(ring: &Ring, keys: &[u64]) -> std::collections::BTreeMap<NodeId, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for &k in keys {
            *counts.entry(ring.owner(k).unwrap()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn three_nodes_share_ten_thousand_guilds_evenly() {
        let keys = guild_ids(10_000);
        let ring = Ring::new([3, 17, 42]);
        let counts = shares(&ring, &keys);
        eprintln!("shares of 10,000 guilds on 3 nodes: {counts:?}");
        assert_eq!(counts.len(), 3);
        for (node, count) in counts {
            let share = count as f64 / keys.len() as f64;
            assert!((share - 1.0 / 3.0).abs() <= 0.05, "node {node} owns {:.1}%", share * 100.0);
        }
    }

    #[test]
    fn a_fourth_node_takes_at_most_thirty_percent_and_only_for_itself() {
        let keys = guild_ids(10_000);
        let before = Ring::new([3, 17, 42]);
        let after = Ring::new([3, 17, 42, 99]);
        let mut moved = 0;
        for &k in &keys {
            let (a, b) = (before.owner(k).unwrap(), after.owner(k).unwrap());
            if a != b {
                assert_eq!(b, 99, "a key moved between two old nodes");
                moved += 1;
            }
        }
        let moved = moved as f64 / keys.len() as f64;
        eprintln!("a fourth node took {:.1}% of 10,000 guilds", moved * 100.0);
        assert!(moved <= 0.30, "{:.1}% moved", moved * 100.0);
        assert!(moved >= 0.15, "the new node got its share ({:.1}%)", moved * 100.0);
    }

    #[test]
    fn a_leaving_node_gives_up_only_its_own_keys() {
        let keys = guild_ids(10_000);
        let before = Ring::new([3, 17, 42]);
        let after = Ring::new([3, 42]);
        for &k in &keys {
            if before.owner(k) != Some(17) {
                assert_eq!(before.owner(k), after.owner(k));
            }
        }
    }

    #[test]
    fn every_node_derives_the_same_ring_from_the_same_members() {
        assert_eq!(Ring::new([42, 3, 17]), Ring::new([17, 42, 3, 3]));
        assert_eq!(Ring::new([]).owner(5), None);
        assert_eq!(Ring::new([7]).owner(5), Some(7));
    }
}
