//! Guildhall on many nodes. Nothing here stands in for a distributed engine: membership
//! and node-id leases live in NATS JetStream KV ([`membership`]), traffic goes over the
//! bus (`guildhall-bus`), data lives in ScyllaDB; what this crate adds is the consistent
//! hash ring that every node derives alike ([`ring`]).

pub mod membership;
pub mod ring;

pub use membership::{ClusterError, Heartbeat, Lease, MembershipConfig, NodeInfo, View};
pub use ring::Ring;
