//! What a bot acts through: the [`BotHost`] its guild provides (the runtime implements it),
//! scoped to that guild. Below the store state, which holds one for bot instances.

use crate::interfaces::guildhall::plugin::types::{HostError, Message as BotMessage};

/// What a bot may do, as its guild allows it. Every call is scoped to the bot's guild.
#[async_trait::async_trait]
pub trait BotHost: Send + Sync + 'static {
    async fn send(&self, channel_id: u64, content: String) -> Result<BotMessage, HostError>;
    async fn edit(&self, channel_id: u64, message_id: u64, content: String) -> Result<BotMessage, HostError>;
    async fn delete(&self, channel_id: u64, message_id: u64) -> Result<(), HostError>;
    async fn recent(&self, channel_id: u64, limit: u32) -> Result<Vec<BotMessage>, HostError>;
    async fn react(&self, channel_id: u64, message_id: u64, emoji: String, add: bool) -> Result<(), HostError>;
    async fn kv_get(&self, key: String) -> Option<Vec<u8>>;
    async fn kv_set(&self, key: String, value: Vec<u8>) -> Result<(), HostError>;
    async fn kv_delete(&self, key: String);
    async fn kv_keys(&self, prefix: String) -> Vec<String>;
    /// Timers outlive the instance: the host keeps them (and may persist them).
    async fn set_timer(&self, delay_ms: u64, payload: String) -> Result<u64, HostError>;
    async fn cancel_timer(&self, id: u64);
    /// Publishes on a subject of the bot's namespace (see the WIT `pubsub` interface).
    async fn publish(&self, subject: String, payload: Vec<u8>) -> Result<(), HostError>;
}
