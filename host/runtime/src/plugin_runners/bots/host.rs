//! What a bot may do in its guild: `GuildBotHost`, the `BotHost` its instance calls. Every
//! action is checked (its guild's channels and messages only), counted against the bot's
//! limits, and done through the guild actor as the bot user.

use std::cmp::Reverse;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guildhall_core::clock::Clock;
use guildhall_core::guild::{Command, GuildError, MessageCommand, Reply};
use guildhall_core::model::{validate_content, Channel, Emoji, GuildId, Message, PluginTimer, User};
use guildhall_core::sync::LockUnpoisoned;
use guildhall_core::Snowflake;
use guildhall_data::DataService;
use guildhall_plugins::{BotHost, BotMessage, HostError};
use guildhall_store::HistoryQuery;

use super::events::to_bot_message;
use super::timers::Timers;
use crate::addresses::guild_ref::{CallError, GuildRef};
use crate::infrastructure::reads::MessageReads;
use crate::plugin_runners::plugin_support::PerMinute;
use crate::plugin_runners::pubsub::{PublishError, Publisher};

/// Sends, edits, deletes and reactions a bot may make per minute, together: every one is a
/// stored write and an event to every session (a bot that edited its own message on each
/// update it heard once made 28,459 writes in 11 s when edits were free).
pub const WRITES_PER_MINUTE: u32 = 30;
pub const MAX_TIMERS: usize = 100;
pub const MAX_TIMER_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;
pub const MAX_KV_KEYS: usize = 1000;
pub const MAX_KV_KEY_BYTES: usize = 128;
pub const MAX_KV_VALUE_BYTES: usize = 64 << 10;
pub const MAX_KV_TOTAL_BYTES: usize = 1 << 20;

/// What a bot may do in its guild.
pub(super) struct GuildBotHost {
    /// Its pub/sub end (its namespace and rate limit).
    pub(super) publisher: Option<Publisher>,
    pub(super) guild_id: GuildId,
    pub(super) plugin_id: Snowflake,
    pub(super) bot_user: User,
    pub(super) guild: GuildRef,
    /// How long an action waits for the guild actor.
    pub(super) guild_call_timeout: Duration,
    pub(super) data: Arc<DataService>,
    pub(super) reads: Arc<dyn MessageReads>,
    pub(super) timers: Arc<Mutex<Timers>>,
    /// When the bot's recent messages were sent (the per-minute limit).
    pub(super) sent: PerMinute,
    /// (keys, bytes) in the bot's key-value store, loaded on first use.
    pub(super) kv_usage: tokio::sync::Mutex<Option<(usize, usize)>>,
    /// Edits are stamped and timers fall due in its wall time.
    pub(super) clock: Arc<dyn Clock>,
}

fn unavailable(e: impl std::fmt::Display) -> HostError {
    HostError::Unavailable(e.to_string())
}

impl GuildBotHost {
    /// The channel, if it is one of this guild's.
    async fn own_channel(&self, channel_id: u64) -> Result<Channel, HostError> {
        let channel = self.data.store().channel(Snowflake(channel_id)).await.map_err(unavailable)?;
        match channel {
            None => Err(HostError::NotFound),
            Some(c) if c.guild_id != Some(self.guild_id) => Err(HostError::Denied("a channel of another guild".into())),
            Some(c) => Ok(c),
        }
    }

    /// A message of one of this guild's channels.
    async fn own_message(&self, channel_id: u64, message_id: u64) -> Result<Message, HostError> {
        let channel = self.own_channel(channel_id).await?;
        let message = self.reads.message(&channel, Snowflake(message_id)).await.map_err(unavailable)?;
        message.ok_or(HostError::NotFound)
    }

    async fn call(&self, command: impl Into<Command>) -> Result<Reply, HostError> {
        let command = command.into();
        match self.guild.call(command, self.guild_call_timeout).await {
            Ok(reply) => Ok(reply),
            Err(CallError::Guild(GuildError::Blocked(reason))) => Err(HostError::Denied(reason)),
            Err(CallError::Guild(GuildError::UnknownMessage)) => Err(HostError::NotFound),
            Err(CallError::Guild(GuildError::Storage(m))) => Err(HostError::Unavailable(m)),
            Err(CallError::Guild(e)) => Err(HostError::Denied(e.to_string())),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn check_content(content: &str) -> Result<(), HostError> {
        validate_content(content).map_err(|e| HostError::Invalid(e.into()))
    }

    fn take_write_budget(&self) -> Result<(), HostError> {
        if !self.sent.take() {
            return Err(HostError::Limited(format!("{WRITES_PER_MINUTE} writes per minute")));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BotHost for GuildBotHost {
    async fn send(&self, channel_id: u64, content: String) -> Result<BotMessage, HostError> {
        Self::check_content(&content)?;
        self.own_channel(channel_id).await?;
        self.take_write_budget()?;
        let command = MessageCommand::Create {
            author: self.bot_user.id,
            channel_id: Snowflake(channel_id),
            id: Snowflake::default(), // taken by the guild actor
            content,
            nonce: None,
            enforce_nonce: false,
        };
        match self.call(command).await? {
            Reply::Message(m) => Ok(to_bot_message(&m)),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn edit(&self, channel_id: u64, message_id: u64, content: String) -> Result<BotMessage, HostError> {
        Self::check_content(&content)?;
        let existing = self.own_message(channel_id, message_id).await?;
        self.take_write_budget()?;
        let edited_timestamp = self.clock.iso_now();
        let command =
            MessageCommand::Edit { user: self.bot_user.id, existing: Box::new(existing), content, edited_timestamp };
        match self.call(command).await? {
            Reply::Message(m) => Ok(to_bot_message(&m)),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn delete(&self, channel_id: u64, message_id: u64) -> Result<(), HostError> {
        let existing = self.own_message(channel_id, message_id).await?;
        self.take_write_budget()?;
        self.call(MessageCommand::Delete { user: self.bot_user.id, existing: Box::new(existing) }).await.map(|_| ())
    }

    async fn recent(&self, channel_id: u64, limit: u32) -> Result<Vec<BotMessage>, HostError> {
        let channel = self.own_channel(channel_id).await?;
        let messages = self
            .reads
            .history(&channel, HistoryQuery::Latest, limit.clamp(1, 100) as usize)
            .await
            .map_err(unavailable)?;
        Ok(messages.iter().map(to_bot_message).collect())
    }

    async fn react(&self, channel_id: u64, message_id: u64, emoji: String, add: bool) -> Result<(), HostError> {
        let emoji = Emoji::parse(&emoji).map_err(|e| HostError::Invalid(e.into()))?;
        let existing = Box::new(self.own_message(channel_id, message_id).await?);
        let store = self.data.store();
        let (channel, message, user) = (Snowflake(channel_id), Snowflake(message_id), self.bot_user.id);
        if store.has_reacted(channel, message, &emoji.name, user).await.map_err(unavailable)? == add {
            return Ok(()); // already so: nothing to do, nobody to tell
        }
        self.take_write_budget()?;
        let command = if add {
            MessageCommand::AddReaction { user, existing, emoji }
        } else {
            MessageCommand::RemoveReaction { user, existing, emoji }
        };
        self.call(command).await.map(|_| ())
    }

    async fn kv_get(&self, key: String) -> Option<Vec<u8>> {
        self.data.store().kv_get(self.plugin_id, self.guild_id, &key).await.ok().flatten()
    }

    async fn kv_set(&self, key: String, value: Vec<u8>) -> Result<(), HostError> {
        if key.is_empty() || key.len() > MAX_KV_KEY_BYTES {
            return Err(HostError::Invalid(format!("keys are 1 to {MAX_KV_KEY_BYTES} bytes")));
        }
        if value.len() > MAX_KV_VALUE_BYTES {
            return Err(HostError::Limited(format!("values are at most {MAX_KV_VALUE_BYTES} bytes")));
        }
        let store = self.data.store();
        let mut usage = self.kv_usage.lock().await;
        if usage.is_none() {
            let keys = store.kv_keys(self.plugin_id, self.guild_id, "", MAX_KV_KEYS + 1).await.map_err(unavailable)?;
            *usage = Some((keys.len(), keys.iter().map(|(k, v)| k.len() + v).sum()));
        }
        let (keys, bytes) = usage.expect("loaded");
        let old = store.kv_get(self.plugin_id, self.guild_id, &key).await.map_err(unavailable)?;
        let (new_keys, new_bytes) = match &old {
            Some(v) => (keys, bytes - v.len() + value.len()),
            None => (keys + 1, bytes + key.len() + value.len()),
        };
        if new_keys > MAX_KV_KEYS || new_bytes > MAX_KV_TOTAL_BYTES {
            return Err(HostError::Limited(format!("at most {MAX_KV_KEYS} keys and {MAX_KV_TOTAL_BYTES} bytes")));
        }
        store.kv_put(self.plugin_id, self.guild_id, &key, value).await.map_err(unavailable)?;
        *usage = Some((new_keys, new_bytes));
        Ok(())
    }

    async fn kv_delete(&self, key: String) {
        let store = self.data.store();
        let old = store.kv_get(self.plugin_id, self.guild_id, &key).await.ok().flatten();
        if let (Some(old), Ok(())) = (old, store.kv_delete(self.plugin_id, self.guild_id, &key).await) {
            let mut usage = self.kv_usage.lock().await;
            if let Some((keys, bytes)) = *usage {
                *usage = Some((keys.saturating_sub(1), bytes.saturating_sub(key.len() + old.len())));
            }
        }
    }

    async fn kv_keys(&self, prefix: String) -> Vec<String> {
        let keys =
            self.data.store().kv_keys(self.plugin_id, self.guild_id, &prefix, MAX_KV_KEYS).await.unwrap_or_default();
        keys.into_iter().map(|(k, _)| k).collect()
    }

    async fn set_timer(&self, delay_ms: u64, payload: String) -> Result<u64, HostError> {
        if delay_ms > MAX_TIMER_DELAY_MS || payload.len() > MAX_KV_VALUE_BYTES {
            return Err(HostError::Invalid(format!(
                "timers are at most {MAX_TIMER_DELAY_MS} ms away, payloads 64 KiB"
            )));
        }
        let timer = {
            let mut timers = self.timers.lock_unpoisoned();
            if timers.payloads.len() >= MAX_TIMERS {
                return Err(HostError::Limited(format!("at most {MAX_TIMERS} pending timers")));
            }
            timers.next_id += 1;
            let timer = PluginTimer { id: timers.next_id, due_unix_ms: self.clock.unix_ms() + delay_ms, payload };
            timers.payloads.insert(timer.id, timer.payload.clone());
            timers.due.push(Reverse((timer.due_unix_ms, timer.id)));
            timer
        };
        let id = timer.id;
        if let Err(e) = self.data.store().put_timer(self.plugin_id, self.guild_id, timer).await {
            self.timers.lock_unpoisoned().payloads.remove(&id);
            return Err(unavailable(e));
        }
        Ok(id)
    }

    async fn publish(&self, subject: String, payload: Vec<u8>) -> Result<(), HostError> {
        let Some(publisher) = &self.publisher else {
            return Err(HostError::Unavailable("pub/sub is not enabled on this host".into()));
        };
        publisher.publish(&subject, payload).await.map_err(|e| match e {
            PublishError::Invalid(m) => HostError::Invalid(m),
            PublishError::Denied(m) => HostError::Denied(m),
            PublishError::Limited(m) => HostError::Limited(m),
            PublishError::Unavailable(m) => HostError::Unavailable(m),
        })
    }

    async fn cancel_timer(&self, id: u64) {
        if self.timers.lock_unpoisoned().payloads.remove(&id).is_some() {
            if let Err(e) = self.data.store().delete_timer(self.plugin_id, self.guild_id, id).await {
                tracing::warn!(plugin = %self.plugin_id, error = %e, "a cancelled timer stays stored; it may fire later");
            }
        }
    }
}
