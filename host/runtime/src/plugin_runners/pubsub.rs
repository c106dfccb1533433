//! Plugins' publish/subscribe on the bus (in process on a single host, NATS in a cluster):
//! the subjects are `guildhall_core::plugin_subjects`'s (confined to the plugin's guild);
//! here they are subscribed to and published, within a size and a rate.

use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use guildhall_bus::{Bus, Subscription};
pub use guildhall_core::plugin_subjects::{
    check_grants, PluginSubjects, Scope, MAX_SUBJECT_BYTES, MAX_SUBSCRIPTIONS, MAX_TOKENS, SUBSCRIBE_KEY,
};

use guildhall_core::clock::Clock;

use crate::plugin_runners::plugin_support::PerMinute;

/// A publish's payload, at most.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 10;
/// Publishes per plugin (and guild) a minute.
pub const PUBLISHES_PER_MINUTE: u32 = 600;

/// The bus as plugins see it: their subjects (see [`PluginSubjects`]) on a bus.
pub struct PluginBus {
    pub bus: Arc<dyn Bus>,
    subjects: PluginSubjects,
}

impl Deref for PluginBus {
    type Target = PluginSubjects;
    fn deref(&self) -> &PluginSubjects {
        &self.subjects
    }
}

impl PluginBus {
    /// `shared`: the operator's grants, as patterns under `shared.` (e.g. `alerts.>`).
    pub fn new(bus: Arc<dyn Bus>, cluster: &str, shared: &[String]) -> Result<PluginBus, String> {
        Ok(PluginBus { bus, subjects: PluginSubjects::new(cluster, shared)? })
    }

    /// Subscribes to what `subscriptions` returned.
    pub async fn subscribe(&self, patterns: &[String]) -> Result<Vec<Subscription>, String> {
        let mut subscriptions = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            subscriptions.push(self.bus.subscribe(pattern).await.map_err(|e| e.to_string())?);
        }
        Ok(subscriptions)
    }
}

/// Why a publish was refused (mapped to the plugin's `host-error`).
#[derive(Debug, PartialEq, Eq)]
pub enum PublishError {
    Invalid(String),
    Denied(String),
    Limited(String),
    Unavailable(String),
}

/// One plugin's publisher: its scope, its rate limit.
pub struct Publisher {
    pub bus: Arc<PluginBus>,
    pub scope: Scope,
    recent: PerMinute,
}

impl Publisher {
    pub fn new(bus: Arc<PluginBus>, scope: Scope, clock: Arc<dyn Clock>) -> Publisher {
        Publisher { bus, scope, recent: PerMinute::new(PUBLISHES_PER_MINUTE, clock) }
    }

    pub async fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(PublishError::Invalid(format!("payload over {MAX_PAYLOAD_BYTES} bytes")));
        }
        let target = self.bus.publish_subject(&self.scope, subject).map_err(|e| {
            if subject.starts_with("shared.") {
                PublishError::Denied(e)
            } else {
                PublishError::Invalid(e)
            }
        })?;
        if !self.recent.take() {
            return Err(PublishError::Limited(format!("{PUBLISHES_PER_MINUTE} publishes a minute")));
        }
        self.bus.bus.publish(&target, Bytes::from(payload)).await.map_err(|e| PublishError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_bus::LocalBus;
    use guildhall_core::Snowflake;

    fn bus(shared: &[&str]) -> PluginBus {
        let shared: Vec<String> = shared.iter().map(|s| s.to_string()).collect();
        PluginBus::new(Arc::new(LocalBus::new()), "c", &shared).unwrap()
    }

    fn quiz(guild: u64) -> Scope {
        Scope { guild: Snowflake(guild), plugin: "quiz".into() }
    }

    #[tokio::test]
    async fn publishes_are_bounded_in_size_and_rate() {
        let b = Arc::new(bus(&[]));
        let clock = Arc::new(guildhall_core::clock::ManualClock::new(0));
        let publisher = Publisher::new(b.clone(), quiz(7), clock.clone());
        let mut heard = b.bus.subscribe("c.pubsub.g7.>").await.unwrap();
        publisher.publish("a", b"hi".to_vec()).await.unwrap();
        assert_eq!(heard.next().await.unwrap().subject, "c.pubsub.g7.quiz.a");
        let big = vec![0; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(publisher.publish("a", big).await, Err(PublishError::Invalid(_))));
        assert!(matches!(publisher.publish("shared.x", vec![]).await, Err(PublishError::Denied(_))));
        for _ in 1..PUBLISHES_PER_MINUTE {
            publisher.publish("a", vec![]).await.unwrap();
        }
        assert!(matches!(publisher.publish("a", vec![]).await, Err(PublishError::Limited(_))));
        clock.advance(60_000);
        publisher.publish("a", vec![]).await.expect("the next minute");
    }
}
