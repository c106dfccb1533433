//! The Directory seam: "where does guild X (or DM channel X) live, and how do I talk to it?"
//!
//! [`LocalDirectory`] runs every guild (or, made with [`LocalDirectory::dms`], every DM
//! channel) in this process, starting an actor on first use (loading its state from
//! storage). Exactly one actor runs per guild: concurrent first lookups share one load, and
//! an actor that stopped (evicted when idle) is replaced only after its task has finished,
//! so the next one loads everything the last one stored. The cluster issue puts a
//! consistent hash ring behind this trait.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use guildhall_core::dm::DmState;
use guildhall_core::guild::GuildState;
use guildhall_core::model::{GuildId, UserId};
use guildhall_core::stream::LogKey;
use guildhall_store::StoreError;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::actors::dm_actor::spawn_dm;
use crate::actors::guild_actor::{spawn_guild, Fence, GuildDeps};
pub use crate::addresses::guild_ref::LocateError;
use crate::addresses::guild_ref::{GuildRef, Locate};
use crate::infrastructure::event_relay::LogRelay;

#[async_trait]
pub trait Directory: Send + Sync {
    async fn locate(&self, guild: GuildId) -> Result<GuildRef, LocateError>;
    /// Whether the actor runs in this process now: locating it then starts nothing.
    fn is_running_here(&self, guild: GuildId) -> bool;
}

/// A running actor: its address and its task (awaited before a successor starts).
struct Running {
    handle: GuildRef,
    task: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

/// One incarnation of a guild's actor, started on first use.
#[derive(Default)]
struct Slot {
    running: OnceCell<Running>,
    /// The incarnation this one replaces: it must have finished before this one loads.
    previous: Option<Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>>,
}

/// What a directory's actors are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actors {
    Guilds,
    /// DM channels, keyed by channel id.
    Dms,
}

pub struct LocalDirectory {
    deps: GuildDeps,
    actors: Actors,
    guilds: Mutex<HashMap<GuildId, Arc<Slot>>>,
}

impl LocalDirectory {
    /// The directory of guilds. It gives its refs a way back to it (weakly), so that a ref
    /// whose actor stopped reaches the next one.
    pub fn new(deps: GuildDeps) -> Arc<LocalDirectory> {
        Self::with(deps, Actors::Guilds, None)
    }

    /// The directory of DM channels, keyed by channel id (the same rules as guilds).
    pub fn dms(deps: GuildDeps) -> Arc<LocalDirectory> {
        Self::with(deps, Actors::Dms, None)
    }

    /// The local part of a cluster's directory: its refs relocate through `above` (which
    /// may find the actor on another node by then) rather than through this one.
    pub fn under(actors: Actors, deps: GuildDeps, above: Weak<dyn Locate>) -> Arc<LocalDirectory> {
        Self::with(deps, actors, Some(above))
    }

    fn with(mut deps: GuildDeps, actors: Actors, above: Option<Weak<dyn Locate>>) -> Arc<LocalDirectory> {
        Arc::new_cyclic(|me: &Weak<LocalDirectory>| {
            let locator: Weak<dyn Locate> = match above {
                Some(above) => above,
                None => me.clone(),
            };
            deps.locator = Some(locator);
            LocalDirectory { deps, actors, guilds: Mutex::new(HashMap::new()) }
        })
    }

    fn runs(&self, id: GuildId) -> bool {
        let guilds = self.guilds.lock_unpoisoned();
        guilds.get(&id).is_some_and(|slot| slot.running.get().is_some_and(|r| !r.handle.is_closed()))
    }

    /// The ids whose actors are running now.
    pub fn running(&self) -> Vec<GuildId> {
        let guilds = self.guilds.lock_unpoisoned();
        guilds
            .iter()
            .filter(|(_, slot)| slot.running.get().is_some_and(|r| !r.handle.is_closed()))
            .map(|(id, _)| *id)
            .collect()
    }

    /// An actor's event log, its head read from storage (none without a stream).
    async fn log(&self, key: LogKey, recipients: Vec<UserId>) -> Result<Option<LogRelay>, StoreError> {
        match &self.deps.events {
            None => Ok(None),
            Some(stream) => Ok(Some(LogRelay::load(key, recipients, stream.clone()).await?)),
        }
    }

    async fn load(&self, id: GuildId, slot: &Slot) -> Result<Running, LocateError> {
        if let Some(previous) = &slot.previous {
            if let Some(task) = previous.lock().await.take() {
                let _ = task.await; // its writes are stored and answered
            }
        }
        let store = self.deps.data.store();
        let kind = match self.actors {
            Actors::Guilds => "guild",
            Actors::Dms => "dm",
        };
        // In a cluster: take the actor before loading it (after its last owner stored
        // everything and let go); the fence is checked before every write.
        let fence = match &self.deps.ownership {
            None => None,
            Some(ownership) => {
                let token = ownership.acquire(kind, id).await.map_err(LocateError::Unreachable)?;
                Some(Fence { ownership: ownership.clone(), token })
            }
        };
        let loaded = async {
            Ok(match self.actors {
                Actors::Guilds => {
                    let guild = store.guild(id).await?.ok_or(LocateError::UnknownGuild)?;
                    let channels = store.guild_channels(id).await?;
                    let members = store.members(id, None, usize::MAX).await?;
                    let bans = store.bans(id, None, usize::MAX).await?;
                    let state = GuildState::new(guild, channels, members).with_bans(bans);
                    let log = self.log(LogKey::Guild(id), Vec::new()).await?;
                    spawn_guild(state, self.deps.clone(), fence.clone(), log)
                }
                Actors::Dms => {
                    let channel = store.channel(id).await?.filter(|c| c.guild_id.is_none());
                    let channel = channel.ok_or(LocateError::UnknownChannel)?;
                    let recipients = channel.recipients.iter().map(|u| u.id).collect();
                    let log = self.log(LogKey::Dm(id), recipients).await?;
                    spawn_dm(DmState::new(channel), self.deps.clone(), fence.clone(), log)
                }
            })
        };
        let (handle, task) = match loaded.await {
            Ok(started) => started,
            Err(e) => {
                if let Some(Fence { ownership, token }) = fence {
                    ownership.release(token).await; // nothing started: give it back
                }
                return Err(e);
            }
        };
        Ok(Running { handle, task: Arc::new(tokio::sync::Mutex::new(Some(task))) })
    }
}

#[async_trait]
impl Directory for LocalDirectory {
    async fn locate(&self, id: GuildId) -> Result<GuildRef, LocateError> {
        let slot = {
            let mut guilds = self.guilds.lock_unpoisoned();
            let slot = guilds.entry(id).or_default();
            // An actor that stopped (evicted when idle) is succeeded by a new incarnation.
            if let Some(stopped) = slot.running.get().filter(|r| r.handle.is_closed()) {
                *slot = Arc::new(Slot { running: OnceCell::new(), previous: Some(stopped.task.clone()) });
            }
            slot.clone()
        };
        let result = slot.running.get_or_try_init(|| self.load(id, &slot)).await.map(|r| r.handle.clone());
        if matches!(result, Err(LocateError::UnknownGuild | LocateError::UnknownChannel)) {
            // Do not keep an entry per unknown id someone asked about.
            let mut guilds = self.guilds.lock_unpoisoned();
            if guilds.get(&id).is_some_and(|s| s.running.get().is_none()) {
                guilds.remove(&id);
            }
        }
        result
    }

    fn is_running_here(&self, id: GuildId) -> bool {
        self.runs(id)
    }
}

#[async_trait]
impl Locate for LocalDirectory {
    async fn locate(&self, guild: GuildId) -> Result<GuildRef, LocateError> {
        Directory::locate(self, guild).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use guildhall_core::clock::Clock;
    use guildhall_core::gateway::Status;
    use guildhall_core::guild::{MessageCommand, Reply};
    use guildhall_core::model::{Channel, Guild, Member, User};
    use guildhall_core::Snowflake;
    use guildhall_data::DataService;
    use guildhall_store::HistoryQuery;
    use guildhall_store_redb::EmbeddedStore;
    use tokio::sync::mpsc;

    use super::*;
    use crate::actors::audit::AuditLog;
    use crate::addresses::guild_ref::{CallError, GuildMsg, GuildRef};
    use crate::addresses::registry::SessionRegistry;
    use crate::addresses::reply::Replies;
    use crate::addresses::session::{SessionHandle, SessionShared};
    use crate::infrastructure::clock::TokioClock;
    use crate::infrastructure::config::GuildConfig;
    use crate::infrastructure::event_relay::EventStream;
    use crate::{Generator, Metrics};
    use guildhall_core::guild::Command;
    use guildhall_core::stream::{Arrival, LogEntry, StreamEvent};
    use guildhall_stream::{EmbeddedLog, EventLog, LogConsumer, StreamError};
    use std::sync::atomic::{AtomicBool, AtomicU64};

    /// The embedded stream, made to fail on demand (every append refused while `down`).
    struct Flaky {
        log: EmbeddedLog,
        down: AtomicBool,
        refused: AtomicU64,
    }

    #[async_trait]
    impl EventLog for Flaky {
        async fn append(&self, entries: &[LogEntry]) -> guildhall_stream::Result<()> {
            if self.down.load(Relaxed) {
                self.refused.fetch_add(1, Relaxed);
                return Err(StreamError::Unavailable("made to fail".into()));
            }
            self.log.append(entries).await
        }
        async fn consumer(&self, name: &str) -> guildhall_stream::Result<Box<dyn LogConsumer>> {
            self.log.consumer(name).await
        }
    }

    fn flaky(dir: &std::path::Path) -> Arc<Flaky> {
        let log = EmbeddedLog::open(&dir.join("events.redb"), 1_000_000).unwrap();
        Arc::new(Flaky { log, down: AtomicBool::new(true), refused: AtomicU64::new(0) })
    }

    /// Reads the stream until `n` entries came (or a long time passed), checking each
    /// log's entries arrive in order, each once.
    async fn read_stream(reader: &mut Box<dyn LogConsumer>, n: usize) -> Vec<LogEntry> {
        let mut got: Vec<LogEntry> = Vec::new();
        let mut applied = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while got.len() < n && tokio::time::Instant::now() < deadline {
            for delivered in reader.fetch(100, Duration::from_millis(200)).await.unwrap() {
                let entry = delivered.entry.unwrap();
                assert_eq!(entry.arrival(applied), Arrival::Next, "in order, once, no gap: {entry:?}");
                applied = entry.seq;
                got.push(entry);
            }
        }
        got
    }

    fn created(entry: &LogEntry) -> Option<&str> {
        match &entry.event {
            StreamEvent::MessageCreate { message } => Some(&message.content),
            _ => None,
        }
    }

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
        fixture_with(idle_evict_ms, None).await
    }

    async fn fixture_with(idle_evict_ms: u64, events: Option<Arc<dyn EventLog>>) -> Fixture {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir =
            std::env::temp_dir().join(format!("guildhall-dir-test-{}-{}", std::process::id(), N.fetch_add(1, Relaxed)));
        let store: Arc<dyn guildhall_store::Storage> = Arc::new(EmbeddedStore::open(&dir).unwrap());
        let owner = Member::new(User::new(OWNER, "owner", false), "2026-01-01T00:00:00.000000+00:00".into());
        let general = Channel::text(GENERAL, GUILD, "general");
        store.create_guild(Guild::new(GUILD, "g", OWNER), owner, vec![general]).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new(1_700_000_000_000));
        let data = DataService::new(store.clone(), 1, true, clock.clone());
        let metrics = Arc::new(Metrics::default());
        let ids = Arc::new(Generator::new(0, 11, clock.clone()));
        let sessions = Arc::new(SessionRegistry::default());
        let events = events.map(|log| EventStream {
            log,
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            storage_appends: false,
        });
        let deps = GuildDeps {
            clock: clock.clone(),
            data: data.clone(),
            metrics: metrics.clone(),
            ids: ids.clone(),
            config: GuildConfig { idle_evict_ms, ..GuildConfig::default() },
            plugins: None,
            plugin_limits: Default::default(),
            audit: AuditLog::spawn(store, ids, metrics.clone()),
            replies: Replies::new(0, clock),
            sessions: sessions.clone(),
            locator: None,
            ownership: None,
            plugin_bus: None,
            bot_placement: None,
            events,
            relays: crate::actors::relay::Relays::spawn(2, 4096, metrics.clone()),
        };
        Fixture { directory: LocalDirectory::new(deps), metrics, sessions, data, dir }
    }

    fn post(content: String) -> MessageCommand {
        MessageCommand::Create {
            author: OWNER,
            channel_id: GENERAL,
            id: Snowflake::default(),
            content,
            nonce: None,
            enforce_nonce: false,
        }
    }

    async fn until(what: &str, done: impl FnMut() -> bool) {
        until_within(Duration::from_secs(5), what, done).await
    }

    async fn until_within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
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

    /// In virtual time (tokio's clock paused; the guild's clock follows it): an idle guild
    /// is evicted once its idle time is up, counted from the end of its last work, and at
    /// the latest one housekeeping period (a quarter of it) later.
    #[tokio::test(start_paused = true)]
    async fn an_idle_guild_is_evicted_when_its_idle_time_is_up_in_virtual_time() {
        const IDLE_MS: u64 = 400;
        let f = fixture(IDLE_MS).await;
        let handle = Directory::locate(f.directory.as_ref(), GUILD).await.unwrap();
        // Virtual time leaps while a write waits on the disk (tokio advances a paused clock
        // to the next timer whenever every task waits, tick after housekeeping tick): on a
        // loaded machine a slow fsync let it pass an hour (the call answered Busy), so
        // the call's own timeout is a month off.
        let reply = handle.call(post("last".into()), Duration::from_secs(30 * 86_400)).await;
        assert!(matches!(reply, Ok(Reply::Message(_))), "{reply:?}");
        let answered = tokio::time::Instant::now();
        until("the guild is evicted", || f.metrics.guilds_evicted.load(Relaxed) == 1).await;
        let idle_for = answered.elapsed();
        let (idle, period) = (Duration::from_millis(IDLE_MS), Duration::from_millis(IDLE_MS / 4));
        assert!(idle_for >= idle, "evicted after {idle_for:?}, before its idle time");
        // `until` looks every 5 ms (virtual): the eviction is seen at most that much later.
        assert!(idle_for <= idle + period + Duration::from_millis(5), "evicted only after {idle_for:?}");
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[tokio::test(start_paused = true)]
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
        assert!(handle.send(GuildMsg::Connect { session: address, status: Status::Online }).await);
        assert!(rx.recv().await.is_some(), "GUILD_CREATE");
        // Ten times its idle time, in virtual time: every housekeeping tick has looked.
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
        assert!(handle.send(GuildMsg::Connect { session: address, status: Status::Online }).await);
        let name = |msg: Option<crate::addresses::session::SessionMsg>| match msg {
            Some(crate::addresses::session::SessionMsg::Dispatch(d)) => {
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

    /// The wire between two nodes in this test: every message and answer crosses it as
    /// bytes, so whatever reaches the other side is only what serde carried.
    struct Wire(mpsc::UnboundedSender<Vec<u8>>);

    #[async_trait]
    impl crate::addresses::guild_ref::RemoteMailbox for Wire {
        async fn send(&self, guild: GuildId, msg: GuildMsg) -> Result<(), crate::addresses::guild_ref::Undelivered> {
            let bytes = serde_json::to_vec(&(guild, &msg)).unwrap();
            self.0.send(bytes).map_err(|_| crate::addresses::guild_ref::Undelivered::Relocate(Box::new(msg)))
        }
        fn is_closed(&self) -> bool {
            self.0.is_closed()
        }
        async fn gone(&self) {
            std::future::pending().await // this wire's far side never leaves
        }
    }

    /// A node that takes every message and then dies before answering: `gone` resolves
    /// once `died` is set.
    struct DiesAfterTaking(tokio::sync::watch::Receiver<bool>);

    #[async_trait]
    impl crate::addresses::guild_ref::RemoteMailbox for DiesAfterTaking {
        async fn send(&self, _: GuildId, _: GuildMsg) -> Result<(), crate::addresses::guild_ref::Undelivered> {
            Ok(())
        }
        fn is_closed(&self) -> bool {
            false
        }
        async fn gone(&self) {
            let _ = self.0.clone().wait_for(|died| *died).await;
        }
    }

    /// In virtual time: the caller waits until the node leaves, however long, and learns
    /// it at that instant, not at its timeout.
    #[tokio::test(start_paused = true)]
    async fn a_caller_whose_guild_node_dies_learns_it_when_the_node_leaves_not_at_its_timeout() {
        let caller_node = Replies::new(1, Arc::new(TokioClock::new(1_700_000_000_000)));
        let (died, dying) = tokio::sync::watch::channel(false);
        let remote = GuildRef::remote(GUILD, Arc::new(DiesAfterTaking(dying)), caller_node.clone(), None);
        let started = tokio::time::Instant::now();
        let call = tokio::spawn(async move { remote.call(post("lost".into()), Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(!call.is_finished(), "no answer after 29 s of its 30, and the node is still there");
        died.send(true).unwrap();
        let answer = call.await.unwrap();
        assert!(matches!(answer, Err(CallError::Busy)), "answered busy: it may have run or not");
        assert_eq!(started.elapsed(), Duration::from_secs(29), "when the node left, not at the timeout");
        assert_eq!(caller_node.waiting(), 0, "the waiter is gone too");
    }

    impl crate::addresses::reply::ReplyTransport for Wire {
        fn send_reply(&self, to: crate::addresses::reply::ReplyTo, result: crate::addresses::reply::CommandResult) {
            let _ = self.0.send(serde_json::to_vec(&(to, result)).unwrap());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guild_on_another_node_is_called_with_plain_data() {
        let f = fixture(0).await; // node 0 runs the guild
        let caller_node = Replies::new(1, Arc::new(TokioClock::new(1_700_000_000_000)));

        // Node 0 takes serialized guild messages off the wire and hands them to its guild.
        let (to_node0, mut node0_inbox) = mpsc::unbounded_channel::<Vec<u8>>();
        let directory = f.directory.clone();
        tokio::spawn(async move {
            while let Some(bytes) = node0_inbox.recv().await {
                let (guild, msg): (GuildId, GuildMsg) = serde_json::from_slice(&bytes).unwrap();
                let local = Directory::locate(directory.as_ref(), guild).await.unwrap();
                assert!(local.is_local());
                local.send(msg).await;
            }
        });
        // Node 0's answers for node 1 cross back the same way.
        let (to_node1, mut node1_inbox) = mpsc::unbounded_channel::<Vec<u8>>();
        assert!(f.directory.deps.replies.set_transport(Arc::new(Wire(to_node1))));
        let answers = caller_node.clone();
        tokio::spawn(async move {
            while let Some(bytes) = node1_inbox.recv().await {
                let (to, result): (crate::addresses::reply::ReplyTo, crate::addresses::reply::CommandResult) =
                    serde_json::from_slice(&bytes).unwrap();
                answers.deliver(to, result);
            }
        });

        let remote = GuildRef::remote(GUILD, Arc::new(Wire(to_node0)), caller_node.clone(), None);
        assert!(!remote.is_local());
        let reply = remote.call(post("over the wire".into()), Duration::from_secs(5)).await.unwrap();
        let Reply::Message(message) = reply else { panic!("{reply:?}") };
        assert_eq!((message.content.as_str(), message.channel_id), ("over the wire", GENERAL));
        // Errors are data too: a non-member is refused, and the refusal crosses back.
        let stranger = MessageCommand::Create {
            author: Snowflake(999),
            channel_id: GENERAL,
            id: Snowflake::default(),
            content: "x".into(),
            nonce: None,
            enforce_nonce: false,
        };
        let refused = remote.call(stranger, Duration::from_secs(5)).await;
        assert!(matches!(refused, Err(CallError::Guild(guildhall_core::guild::GuildError::NotMember))), "{refused:?}");
        assert_eq!(caller_node.waiting(), 0, "every answer found its caller");
        let channel = Channel::text(GENERAL, GUILD, "general");
        let history = f.data.history(&channel, HistoryQuery::Latest, 50).await.unwrap();
        assert_eq!(history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["over the wire"]);
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dm_channel_is_an_actor_keyed_by_its_channel_and_evicted_when_idle() {
        let f = fixture(40).await;
        const BOB: Snowflake = Snowflake(2);
        let store = f.data.store().clone();
        let (alice, bob) = (User::new(OWNER, "owner", false), User::new(BOB, "bob", false));
        let dm = store.get_or_create_dm(alice, bob, Snowflake(500)).await.unwrap();
        let dms = LocalDirectory::dms(f.directory.deps.clone());
        assert!(matches!(Directory::locate(dms.as_ref(), GENERAL).await, Err(LocateError::UnknownChannel)));

        // Bob is connected (with the DM intent): what Alice writes reaches him.
        let (tx, mut rx) = mpsc::channel(64);
        let session = SessionHandle {
            id: guildhall_core::guild::SessionId::new(0, 9),
            user: BOB,
            intents: guildhall_core::gateway::intents::DIRECT_MESSAGES,
            tx,
            shared: Arc::new(SessionShared::default()),
        };
        f.sessions.insert("bob".into(), session);
        let actor = Directory::locate(dms.as_ref(), dm.id).await.unwrap();
        let say = |author, content: &str| MessageCommand::Create {
            author,
            channel_id: dm.id,
            id: Snowflake::default(),
            content: content.into(),
            nonce: None,
            enforce_nonce: false,
        };
        for round in 0..2 {
            let reply = actor.call(say(OWNER, &format!("hi {round}")), Duration::from_secs(5)).await;
            assert!(matches!(reply, Ok(Reply::Message(_))), "{reply:?}");
            let Some(crate::addresses::session::SessionMsg::Dispatch(d)) = rx.recv().await else {
                panic!("no dispatch")
            };
            let v: serde_json::Value = serde_json::from_slice(&d.with_seq(1)).unwrap();
            assert_eq!(
                (v["t"].as_str(), v["d"]["content"].as_str()),
                (Some("MESSAGE_CREATE"), Some(&*format!("hi {round}")))
            );
            // Idle for longer than the limit: the actor stops; the same ref reaches the next.
            until("the DM actor is evicted", || f.metrics.dms_loaded.load(Relaxed) == 0).await;
        }
        assert!(f.metrics.dms_evicted.load(Relaxed) >= 2);
        let stranger = actor.call(say(Snowflake(999), "let me in"), Duration::from_secs(5)).await;
        assert!(matches!(stranger, Err(CallError::Guild(guildhall_core::guild::GuildError::NotMember))));
        let history = f.data.history(&dm, HistoryQuery::Latest, 50).await.unwrap();
        assert_eq!(history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hi 1", "hi 0"]);
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    /// The outbox under a stream outage: every write is acknowledged while the stream refuses
    /// appends (the stream is not in the sender's path), and once it is back every
    /// acknowledged write's event is in it, in order, exactly once; nothing stays pending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_outage_neither_holds_up_writes_nor_loses_their_events() {
        let dir = std::env::temp_dir().join(format!("guildhall-outage-{}", std::process::id()));
        let stream = flaky(&dir);
        let f = fixture_with(0, Some(stream.clone())).await;
        let mut reader = stream.consumer("test").await.unwrap();
        let guild = Directory::locate(f.directory.as_ref(), GUILD).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..40 {
            let reply = guild.call(post(format!("m{i}")), Duration::from_secs(5)).await;
            let Ok(Reply::Message(m)) = reply else { panic!("acknowledged despite the outage: {reply:?}") };
            acked.push(m);
        }
        let delete = Command::from(MessageCommand::Delete { user: OWNER, existing: Box::new(acked[3].clone()) });
        assert!(guild.call(delete, Duration::from_secs(5)).await.is_ok());
        until("the relay tried the stream", || stream.refused.load(Relaxed) > 0).await;
        assert!(reader.fetch(10, Duration::from_millis(100)).await.unwrap().is_empty(), "nothing got through");
        let store = f.data.store().clone();
        assert_eq!(store.logs_pending(10).await.unwrap(), vec![LogKey::Guild(GUILD)], "stored, pending");

        stream.down.store(false, Relaxed);
        let got = read_stream(&mut reader, 41).await;
        let contents: Vec<&str> = got.iter().filter_map(created).collect();
        let sent: Vec<String> = acked.iter().map(|m| m.content.clone()).collect();
        assert_eq!(contents, sent, "every acknowledged message, in order");
        assert!(
            matches!(got[40].event, StreamEvent::MessageDelete { id, .. } if id == acked[3].id),
            "then the delete: {:?}",
            got[40].event
        );
        assert!(reader.fetch(10, Duration::from_millis(200)).await.unwrap().is_empty(), "nothing twice");
        let mut pending = store.logs_pending(10).await.unwrap();
        for _ in 0..100 {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            pending = store.logs_pending(10).await.unwrap();
        }
        assert!(pending.is_empty(), "relayed entries leave storage");
        assert!(f.metrics.event_relay_failures.load(Relaxed) > 0);
        let _ = std::fs::remove_dir_all(&f.dir);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An actor that stops while the stream is down leaves its events stored; the next
    /// incarnation (here, or after a crash) relays them first, then its own, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_an_actor_could_not_relay_are_relayed_by_the_next_one() {
        let dir = std::env::temp_dir().join(format!("guildhall-next-relay-{}", std::process::id()));
        let stream = flaky(&dir);
        let f = fixture_with(0, Some(stream.clone())).await;
        let mut reader = stream.consumer("test").await.unwrap();
        let guild = Directory::locate(f.directory.as_ref(), GUILD).await.unwrap();
        for i in 0..5 {
            assert!(guild.call(post(format!("first{i}")), Duration::from_secs(5)).await.is_ok());
        }
        assert!(guild.send(GuildMsg::HandOff).await);
        // It gives up relaying after DRAIN_ON_STOP; then the next one starts. (Waiting only
        // as long as the drain made this test fail on a busy machine.)
        let drain = crate::infrastructure::event_relay::DRAIN_ON_STOP;
        until_within(drain + Duration::from_secs(10), "the actor stopped", || {
            f.metrics.guilds_loaded.load(Relaxed) == 0
        })
        .await;
        stream.down.store(false, Relaxed);
        let next = Directory::locate(f.directory.as_ref(), GUILD).await.unwrap();
        assert!(next.call(post("second".into()), Duration::from_secs(5)).await.is_ok());
        let got = read_stream(&mut reader, 6).await;
        let contents: Vec<&str> = got.iter().filter_map(created).collect();
        assert_eq!(contents, vec!["first0", "first1", "first2", "first3", "first4", "second"]);
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6], "numbering went on");
        let _ = std::fs::remove_dir_all(&f.dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
