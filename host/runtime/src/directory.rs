//! The Directory seam: "where does guild X live, and how do I talk to it?"
//!
//! [`LocalDirectory`] runs every guild in this process, starting a guild's actor on first
//! use (loading its state from storage). Exactly one actor runs per guild: concurrent first
//! lookups share one load, and an actor that stopped (evicted when idle) is replaced only
//! after its task has finished, so the next one loads everything the last one stored. The
//! cluster issue puts a consistent hash ring behind this trait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use guildhall_core::guild::GuildState;
use guildhall_core::model::GuildId;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::guild_actor::{spawn_guild, GuildDeps};
pub use crate::guild_ref::LocateError;
use crate::guild_ref::{GuildHandle, Locate};

#[async_trait]
pub trait Directory: Send + Sync {
    async fn locate(&self, guild: GuildId) -> Result<GuildHandle, LocateError>;
}

/// A running actor: its address and its task (awaited before a successor starts).
struct Running {
    handle: GuildHandle,
    task: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

/// One incarnation of a guild's actor, started on first use.
#[derive(Default)]
struct Slot {
    running: OnceCell<Running>,
    /// The incarnation this one replaces: it must have finished before this one loads.
    previous: Option<Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>>,
}

pub struct LocalDirectory {
    deps: GuildDeps,
    guilds: Mutex<HashMap<GuildId, Arc<Slot>>>,
}

impl LocalDirectory {
    /// The directory gives its guild handles a way back to it (weakly), so that a handle
    /// whose actor stopped reaches the next one.
    pub fn new(mut deps: GuildDeps) -> Arc<LocalDirectory> {
        Arc::new_cyclic(|me: &Weak<LocalDirectory>| {
            let locator: Weak<dyn Locate> = me.clone();
            deps.locator = Some(locator);
            LocalDirectory { deps, guilds: Mutex::new(HashMap::new()) }
        })
    }

    async fn load(&self, id: GuildId, slot: &Slot) -> Result<Running, LocateError> {
        if let Some(previous) = &slot.previous {
            if let Some(task) = previous.lock().await.take() {
                let _ = task.await; // its writes are stored and answered
            }
        }
        let store = self.deps.data.store();
        let guild = store.guild(id).await?.ok_or(LocateError::UnknownGuild)?;
        let channels = store.guild_channels(id).await?;
        let members = store.members(id, None, usize::MAX).await?;
        let state = GuildState::new(guild, channels, members);
        let (handle, task) = spawn_guild(state, self.deps.clone());
        Ok(Running { handle, task: Arc::new(tokio::sync::Mutex::new(Some(task))) })
    }
}

#[async_trait]
impl Directory for LocalDirectory {
    async fn locate(&self, id: GuildId) -> Result<GuildHandle, LocateError> {
        let slot = {
            let mut guilds = self.guilds.lock().unwrap_or_else(|e| e.into_inner());
            let slot = guilds.entry(id).or_default();
            // An actor that stopped (evicted when idle) is succeeded by a new incarnation.
            if let Some(stopped) = slot.running.get().filter(|r| r.handle.is_closed()) {
                *slot = Arc::new(Slot { running: OnceCell::new(), previous: Some(stopped.task.clone()) });
            }
            slot.clone()
        };
        let result = slot.running.get_or_try_init(|| self.load(id, &slot)).await.map(|r| r.handle.clone());
        if matches!(result, Err(LocateError::UnknownGuild)) {
            // Do not keep an entry per unknown id someone asked about.
            let mut guilds = self.guilds.lock().unwrap_or_else(|e| e.into_inner());
            if guilds.get(&id).is_some_and(|s| s.running.get().is_none()) {
                guilds.remove(&id);
            }
        }
        result
    }
}

#[async_trait]
impl Locate for LocalDirectory {
    async fn locate(&self, guild: GuildId) -> Result<GuildHandle, LocateError> {
        Directory::locate(self, guild).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use guildhall_core::guild::{Command, Reply};
    use guildhall_core::model::{Channel, Guild, Member, User};
    use guildhall_core::Snowflake;
    use guildhall_data::DataService;
    use guildhall_store::HistoryQuery;
    use guildhall_store_redb::EmbeddedStore;
    use tokio::sync::mpsc;

    use super::*;
    use crate::audit::AuditLog;
    use crate::config::GuildConfig;
    use crate::guild_ref::GuildMsg;
    use crate::registry::SessionRegistry;
    use crate::reply::Replies;
    use crate::session::{SessionHandle, SessionShared};
    use crate::{Generator, Metrics};

    const GUILD: Snowflake = Snowflake(10);
    const GENERAL: Snowflake = Snowflake(100);
    const OWNER: Snowflake = Snowflake(1);

    struct Fixture {
        directory: Arc<LocalDirectory>,
        metrics: Arc<Metrics>,
        sessions: Arc<SessionRegistry>,
        data: Arc<DataService>,
        dir: std::path::PathBuf,
    }

    async fn fixture(idle_evict_ms: u64) -> Fixture {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir =
            std::env::temp_dir().join(format!("guildhall-dir-test-{}-{}", std::process::id(), N.fetch_add(1, Relaxed)));
        let store: Arc<dyn guildhall_store::Storage> = Arc::new(EmbeddedStore::open(&dir).unwrap());
        let owner = Member::new(User::new(OWNER, "owner", false), "2026-01-01T00:00:00.000000+00:00".into());
        let general = Channel::text(GENERAL, GUILD, "general");
        store.create_guild(Guild::new(GUILD, "g", OWNER), owner, vec![general]).await.unwrap();
        let data = DataService::new(store.clone(), 1, true);
        let metrics = Arc::new(Metrics::default());
        let ids = Arc::new(Generator::new(0, 11));
        let sessions = Arc::new(SessionRegistry::default());
        let deps = GuildDeps {
            data: data.clone(),
            metrics: metrics.clone(),
            ids: ids.clone(),
            config: GuildConfig { idle_evict_ms, ..GuildConfig::default() },
            plugins: None,
            plugin_limits: Default::default(),
            audit: AuditLog::spawn(store, ids, metrics.clone()),
            replies: Replies::new(0),
            sessions: sessions.clone(),
            locator: None,
        };
        Fixture { directory: LocalDirectory::new(deps), metrics, sessions, data, dir }
    }

    fn post(content: String) -> Command {
        Command::CreateMessage { author: OWNER, channel_id: GENERAL, id: Snowflake::default(), content, nonce: None }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_guild_is_evicted_and_its_old_handles_reach_the_next_actor() {
        let f = fixture(40).await;
        let handle = Directory::locate(f.directory.as_ref(), GUILD).await.unwrap();
        let mut sent = Vec::new();
        for round in 0..6 {
            // Idle for longer than the limit: the actor stops between two messages.
            until("the actor is evicted", || f.metrics.guilds_loaded.load(Relaxed) == 0).await;
            let content = format!("m{round}");
            let reply = handle.call(post(content.clone()), Duration::from_secs(5)).await;
            assert!(matches!(reply, Ok(Reply::Message(_))), "round {round}: {reply:?}");
            sent.push(content);
        }
        assert!(f.metrics.guilds_evicted.load(Relaxed) >= 6);
        assert!(f.metrics.guilds_loaded.load(Relaxed) <= 1, "never two actors for one guild");
        let channel = Channel::text(GENERAL, GUILD, "general");
        let history = f.data.history(&channel, HistoryQuery::Latest, 50).await.unwrap();
        let mut stored: Vec<String> = history.iter().map(|m| m.content.clone()).collect();
        stored.reverse();
        assert_eq!(stored, sent, "every incarnation saw and stored what the last one did");
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guild_with_a_session_stays() {
        let f = fixture(20).await;
        let handle = Directory::locate(f.directory.as_ref(), GUILD).await.unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let session = SessionHandle {
            id: guildhall_core::guild::SessionId::new(0, 1),
            user: OWNER,
            intents: guildhall_core::gateway::intents::GUILDS,
            tx,
            shared: Arc::new(SessionShared::default()),
        };
        let address = session.address();
        f.sessions.insert("key".into(), session);
        assert!(handle.send(GuildMsg::Connect { session: address, status: "online".into() }).await);
        assert!(rx.recv().await.is_some(), "GUILD_CREATE");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(f.metrics.guilds_evicted.load(Relaxed), 0, "a connected session keeps its guild running");
        handle.disconnect(address.id);
        until("the guild is evicted once nobody is connected", || f.metrics.guilds_evicted.load(Relaxed) == 1).await;
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handed_off_guild_restarts_from_storage_with_its_sessions() {
        let f = fixture(0).await; // no eviction: only the hand-off stops it
        let handle = Directory::locate(f.directory.as_ref(), GUILD).await.unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let session = SessionHandle {
            id: guildhall_core::guild::SessionId::new(0, 7),
            user: OWNER,
            intents: guildhall_core::gateway::intents::GUILDS | guildhall_core::gateway::intents::GUILD_MESSAGES,
            tx,
            shared: Arc::new(SessionShared::default()),
        };
        let address = session.address();
        f.sessions.insert("key".into(), session);
        assert!(handle.send(GuildMsg::Connect { session: address, status: "online".into() }).await);
        let name = |msg: Option<crate::session::SessionMsg>| match msg {
            Some(crate::session::SessionMsg::Dispatch(d)) => {
                let v: serde_json::Value = serde_json::from_slice(&d.with_seq(1)).unwrap();
                v["t"].as_str().unwrap_or_default().to_owned()
            }
            _ => "other".into(),
        };
        assert_eq!(name(rx.recv().await), "GUILD_CREATE");
        let reply = handle.call(post("before".into()), Duration::from_secs(5)).await;
        assert!(matches!(reply, Ok(Reply::Message(_))));
        assert_eq!(name(rx.recv().await), "MESSAGE_CREATE");

        assert!(handle.send(GuildMsg::HandOff).await);
        // The next incarnation takes the session over: a fresh GUILD_CREATE, then messages.
        assert_eq!(name(rx.recv().await), "GUILD_CREATE");
        assert_eq!(f.metrics.guilds_loaded.load(Relaxed), 1, "one actor for the guild");
        let reply = handle.call(post("after".into()), Duration::from_secs(5)).await;
        assert!(matches!(reply, Ok(Reply::Message(_))), "{reply:?}");
        assert_eq!(name(rx.recv().await), "MESSAGE_CREATE");
        let channel = Channel::text(GENERAL, GUILD, "general");
        let history = f.data.history(&channel, HistoryQuery::Latest, 50).await.unwrap();
        assert_eq!(history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["after", "before"]);
        let _ = std::fs::remove_dir_all(&f.dir);
    }
}
