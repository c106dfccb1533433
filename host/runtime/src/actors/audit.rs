//! Guild audit logs: who changed what, and what the host and its plugins did on their own
//! (a message blocked or flagged by a moderator plugin, a plugin disabled after faults).
//!
//! Entries are made by the guild actor (its own decisions, and those the REST handlers hand
//! it with [`GuildMsg::Audit`](crate::actors::guild_actor::GuildMsg)), which also sends each one to
//! the owner's sessions as `GUILD_AUDIT_LOG_ENTRY_CREATE`. Storing them is off the message
//! path: a bounded queue drained by one writer task. Under overload (a flood of blocked
//! messages, or storage down) the queue may overflow; entries are then dropped and
//! counted (`guildhall_audit_entries_lost_total`), never waited for: the audit log is a
//! record, not an acknowledged write.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::infrastructure::ids::Generator;
use guildhall_core::model::{AuditLogChange, AuditLogEntry, GuildId, UserId};
use guildhall_core::Snowflake;
use guildhall_store::Storage;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::infrastructure::metrics::Metrics;

/// Entries waiting to be stored.
pub const AUDIT_QUEUE: usize = 1024;

#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditLogEntry>,
    ids: Arc<Generator>,
    metrics: Arc<Metrics>,
}

impl AuditLog {
    /// Starts the writer task.
    pub fn spawn(store: Arc<dyn Storage>, ids: Arc<Generator>, metrics: Arc<Metrics>) -> AuditLog {
        let (queue, mut rx) = mpsc::channel::<AuditLogEntry>(AUDIT_QUEUE);
        let lost = metrics.clone();
        tokio::spawn(async move {
            while let Some(entry) = rx.recv().await {
                if let Err(e) = store.add_audit_entry(entry.clone()).await {
                    lost.audit_entries_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(guild = %entry.guild_id, action = entry.action_type, error = %e, "audit entry not stored");
                }
            }
        });
        AuditLog { queue, ids, metrics }
    }

    /// A new entry with a fresh id, `None` if no id can be taken (the clock went far back).
    pub fn entry(
        &self,
        guild_id: GuildId,
        user_id: Option<UserId>,
        target_id: Option<Snowflake>,
        action_type: u16,
    ) -> Option<AuditLogEntry> {
        let id = self.ids.next_id().ok()?;
        let (reason, changes, options) = (None, Vec::new(), serde_json::Map::new());
        Some(AuditLogEntry { id, guild_id, user_id, target_id, action_type, reason, changes, options })
    }

    /// Queues the entry for storage without waiting.
    pub fn append(&self, entry: AuditLogEntry) {
        if self.queue.try_send(entry).is_err() {
            self.metrics.audit_entries_lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("audit log queue full; entry dropped");
        }
    }
}

/// A change of `key` from `old` to `new`, if they differ.
pub fn change(key: &str, old: Value, new: Value) -> Option<AuditLogChange> {
    (old != new).then(|| AuditLogChange { key: key.into(), old_value: Some(old), new_value: Some(new) })
}
