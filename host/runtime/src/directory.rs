//! The Directory seam: "where does guild X live, and how do I talk to it?"
//!
//! [`LocalDirectory`] runs every guild in this process, starting a guild's actor on first
//! use (loading its state from storage). Exactly one actor runs per guild: concurrent first
//! lookups share one load. The cluster issue puts a consistent hash ring behind this trait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use guildhall_core::guild::GuildState;
use guildhall_core::model::GuildId;
use guildhall_store::StoreError;
use tokio::sync::OnceCell;

use crate::guild_actor::{spawn_guild, GuildDeps};
use crate::guild_ref::GuildHandle;

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("unknown guild")]
    UnknownGuild,
    #[error("{0}")]
    Storage(#[from] StoreError),
}

#[async_trait]
pub trait Directory: Send + Sync {
    async fn locate(&self, guild: GuildId) -> Result<GuildHandle, LocateError>;
}

pub struct LocalDirectory {
    deps: GuildDeps,
    guilds: Mutex<HashMap<GuildId, Arc<OnceCell<GuildHandle>>>>,
}

impl LocalDirectory {
    pub fn new(deps: GuildDeps) -> LocalDirectory {
        LocalDirectory { deps, guilds: Mutex::new(HashMap::new()) }
    }

    async fn load(&self, id: GuildId) -> Result<GuildHandle, LocateError> {
        let store = self.deps.data.store();
        let guild = store.guild(id).await?.ok_or(LocateError::UnknownGuild)?;
        let channels = store.guild_channels(id).await?;
        let members = store.members(id, None, usize::MAX).await?;
        let state = GuildState::new(guild, channels, members);
        Ok(spawn_guild(state, self.deps.clone()))
    }
}

#[async_trait]
impl Directory for LocalDirectory {
    async fn locate(&self, id: GuildId) -> Result<GuildHandle, LocateError> {
        let cell = {
            let mut guilds = self.guilds.lock().unwrap_or_else(|e| e.into_inner());
            let cell = guilds.entry(id).or_default();
            // An actor that stopped (it never should) is replaced rather than mourned.
            if cell.get().is_some_and(|h| h.is_closed()) {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let result = cell.get_or_try_init(|| self.load(id)).await.cloned();
        if matches!(result, Err(LocateError::UnknownGuild)) {
            // Do not keep an entry per unknown id someone asked about.
            let mut guilds = self.guilds.lock().unwrap_or_else(|e| e.into_inner());
            if guilds.get(&id).is_some_and(|c| c.get().is_none()) {
                guilds.remove(&id);
            }
        }
        result
    }
}
