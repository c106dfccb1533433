//! Guildhall on many nodes. Nothing here stands in for a distributed engine: membership
//! and node-id leases live in NATS JetStream KV ([`membership`]), traffic goes over the
//! bus (`guildhall-bus`), data lives in ScyllaDB; what this crate adds is the consistent
//! hash ring that every node derives alike ([`ring`]) and the runtime's seams carried over
//! the bus ([`transport`], [`wire`]): actors run on their ring owner, callers anywhere hold
//! refs to them, and fan-out to another node's sessions is one message per node and event.

pub mod bots;
pub mod membership;
pub mod ownership;
pub mod ring;
pub mod transport;
pub mod wire;

pub use bots::{serve_hosted_bots, SpreadBots};
pub use membership::{ClusterError, Drainer, Heartbeat, Lease, LeaseClock, MembershipConfig, NodeInfo, View};
pub use ownership::KvOwnership;
pub use ring::Ring;
pub use transport::{ClusterDirectory, ClusterMover, ClusterReads, ClusterRouter, Transport};
