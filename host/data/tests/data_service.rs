//! The data service's coalescing, cancellation and read-after-write rules, over the real
//! embedded store wrapped in a decorator that counts partition queries and can hold them
//! at a gate, slow them down, or make them fail.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use guildhall_core::clock::{Clock, ManualClock};
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::*;
use guildhall_core::snowflake::IdState;
use guildhall_core::snowflake::DISCORD_EPOCH_MS;
use guildhall_core::stream::{LogEntry, LogKey};
use guildhall_data::DataService;
use guildhall_store::{HistoryQuery, IdBounds, LoggedBatch, Order, Result, Storage, StoreError};
use guildhall_store_redb::EmbeddedStore;
use tokio::sync::Semaphore;

struct Instrumented {
    inner: EmbeddedStore,
    partition_queries: AtomicU64,
    gate: Semaphore,
    gated: AtomicBool,
    fail: AtomicBool,
    delay_ms: AtomicU64,
}

impl Instrumented {
    fn new() -> Arc<Instrumented> {
        let dir = tempfile::tempdir().unwrap().keep();
        Arc::new(Instrumented {
            inner: EmbeddedStore::open(&dir).unwrap(),
            partition_queries: AtomicU64::new(0),
            gate: Semaphore::new(0),
            gated: AtomicBool::new(false),
            fail: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        })
    }
    fn open_gate(&self) {
        self.gated.store(false, SeqCst);
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl Storage for Instrumented {
    async fn messages_in_bucket(
        &self,
        c: ChannelId,
        b: u32,
        bounds: IdBounds,
        o: Order,
        l: usize,
    ) -> Result<Vec<Message>> {
        self.partition_queries.fetch_add(1, SeqCst);
        if self.gated.load(SeqCst) {
            let _permit = self.gate.acquire().await.unwrap();
        }
        if self.fail.load(SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        let rows = self.inner.messages_in_bucket(c, b, bounds, o, l).await;
        // The answer travels back slowly: what it says is as of the start of the delay.
        let delay = self.delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        rows
    }
    async fn create_user(&self, r: UserRecord) -> Result<()> {
        self.inner.create_user(r).await
    }
    async fn user(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.inner.user(id).await
    }
    async fn user_by_username(&self, n: &str) -> Result<Option<UserRecord>> {
        self.inner.user_by_username(n).await
    }
    async fn put_token(&self, t: &str, u: UserId) -> Result<()> {
        self.inner.put_token(t, u).await
    }
    async fn token_user(&self, t: &str) -> Result<Option<UserId>> {
        self.inner.token_user(t).await
    }
    async fn create_guild(&self, g: Guild, o: Member, c: Vec<Channel>) -> Result<()> {
        self.inner.create_guild(g, o, c).await
    }
    async fn guild(&self, id: GuildId) -> Result<Option<Guild>> {
        self.inner.guild(id).await
    }
    async fn guild_channels(&self, g: GuildId) -> Result<Vec<Channel>> {
        self.inner.guild_channels(g).await
    }
    async fn members(&self, g: GuildId, a: Option<UserId>, l: usize) -> Result<Vec<Member>> {
        self.inner.members(g, a, l).await
    }
    async fn member(&self, g: GuildId, u: UserId) -> Result<Option<Member>> {
        self.inner.member(g, u).await
    }
    async fn user_guilds(&self, u: UserId) -> Result<Vec<GuildId>> {
        self.inner.user_guilds(u).await
    }
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>> {
        self.inner.channel(id).await
    }
    async fn apply(&self, w: GuildWrite) -> Result<()> {
        self.inner.apply(w).await
    }
    async fn apply_logged_batch(&self, w: Vec<GuildWrite>, log: Vec<LogEntry>) -> LoggedBatch {
        self.inner.apply_logged_batch(w, log).await
    }
    async fn log_head(&self, key: LogKey) -> Result<u64> {
        self.inner.log_head(key).await
    }
    async fn log_entries(&self, key: LogKey, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        self.inner.log_entries(key, after, limit).await
    }
    async fn log_relayed(&self, key: LogKey, upto: u64, at: u64) -> Result<()> {
        self.inner.log_relayed(key, upto, at).await
    }
    async fn logs_pending(&self, limit: usize) -> Result<Vec<LogKey>> {
        self.inner.logs_pending(limit).await
    }
    async fn update_user(&self, r: UserRecord) -> Result<()> {
        self.inner.update_user(r).await
    }
    async fn bans(&self, g: GuildId, a: Option<UserId>, l: usize) -> Result<Vec<Ban>> {
        self.inner.bans(g, a, l).await
    }
    async fn create_invite(&self, i: Invite) -> Result<()> {
        self.inner.create_invite(i).await
    }
    async fn invite(&self, c: &str) -> Result<Option<Invite>> {
        self.inner.invite(c).await
    }
    async fn use_invite(&self, c: &str, now: u64) -> Result<Option<Invite>> {
        self.inner.use_invite(c, now).await
    }
    async fn delete_invite(&self, c: &str) -> Result<Option<Invite>> {
        self.inner.delete_invite(c).await
    }
    async fn guild_invites(&self, g: GuildId, l: usize) -> Result<Vec<Invite>> {
        self.inner.guild_invites(g, l).await
    }
    async fn lease_node_id(&self, node: u16, holder: &str, ttl_ms: u64) -> Result<bool> {
        self.inner.lease_node_id(node, holder, ttl_ms).await
    }
    async fn get_or_create_dm(&self, a: User, b: User, id: ChannelId) -> Result<Channel> {
        self.inner.get_or_create_dm(a, b, id).await
    }
    async fn user_dms(&self, u: UserId) -> Result<Vec<Channel>> {
        self.inner.user_dms(u).await
    }
    async fn message(&self, c: ChannelId, id: MessageId) -> Result<Option<Message>> {
        self.inner.message(c, id).await
    }
    async fn put_plugin(&self, p: PluginRecord) -> Result<()> {
        self.inner.put_plugin(p).await
    }
    async fn delete_plugin(&self, g: GuildId, id: guildhall_core::Snowflake) -> Result<()> {
        self.inner.delete_plugin(g, id).await
    }
    async fn guild_plugins(&self, g: GuildId) -> Result<Vec<PluginRecord>> {
        self.inner.guild_plugins(g).await
    }
    async fn collect_components(&self, before: u64) -> Result<Vec<String>> {
        self.inner.collect_components(before).await
    }
    async fn put_component(&self, h: &str, b: Vec<u8>, at: u64) -> Result<()> {
        self.inner.put_component(h, b, at).await
    }
    async fn component(&self, h: &str) -> Result<Option<Vec<u8>>> {
        self.inner.component(h).await
    }
    async fn kv_get(&self, p: guildhall_core::Snowflake, g: GuildId, k: &str) -> Result<Option<Vec<u8>>> {
        self.inner.kv_get(p, g, k).await
    }
    async fn kv_put(&self, p: guildhall_core::Snowflake, g: GuildId, k: &str, v: Vec<u8>) -> Result<()> {
        self.inner.kv_put(p, g, k, v).await
    }
    async fn kv_delete(&self, p: guildhall_core::Snowflake, g: GuildId, k: &str) -> Result<()> {
        self.inner.kv_delete(p, g, k).await
    }
    async fn kv_keys(
        &self,
        p: guildhall_core::Snowflake,
        g: GuildId,
        pre: &str,
        l: usize,
    ) -> Result<Vec<(String, usize)>> {
        self.inner.kv_keys(p, g, pre, l).await
    }
    async fn reaction_users(
        &self,
        c: ChannelId,
        m: MessageId,
        e: &str,
        a: Option<UserId>,
        l: usize,
    ) -> Result<Vec<UserId>> {
        self.inner.reaction_users(c, m, e, a, l).await
    }
    async fn reactions(&self, c: ChannelId, m: MessageId, v: UserId) -> Result<Vec<Reaction>> {
        self.inner.reactions(c, m, v).await
    }
    async fn put_timer(&self, p: guildhall_core::Snowflake, g: GuildId, t: PluginTimer) -> Result<()> {
        self.inner.put_timer(p, g, t).await
    }
    async fn delete_timer(&self, p: guildhall_core::Snowflake, g: GuildId, id: u64) -> Result<()> {
        self.inner.delete_timer(p, g, id).await
    }
    async fn timers(&self, p: guildhall_core::Snowflake, g: GuildId) -> Result<Vec<PluginTimer>> {
        self.inner.timers(p, g).await
    }
    async fn add_audit_entry(&self, e: AuditLogEntry) -> Result<()> {
        self.inner.add_audit_entry(e).await
    }
    async fn audit_log(
        &self,
        g: GuildId,
        b: Option<guildhall_core::Snowflake>,
        l: usize,
        at: u64,
    ) -> Result<Vec<AuditLogEntry>> {
        self.inner.audit_log(g, b, l, at).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

struct Fixture {
    store: Arc<Instrumented>,
    data: Arc<DataService>,
    channel: Channel,
    author: User,
    ids: Ids,
}

async fn fixture(messages: usize) -> Fixture {
    fixture_lingering(messages, Duration::ZERO).await
}

async fn fixture_lingering(messages: usize, linger: Duration) -> Fixture {
    let store = Instrumented::new();
    // Virtual wall time: the newest bucket a history read starts from, and the ids' times.
    let clock = Arc::new(ManualClock::new(DISCORD_EPOCH_MS + 300_000_000_000));
    let data = DataService::with_linger(store.clone(), 2, true, linger, clock.clone());
    let ids = Ids(std::sync::Mutex::new(IdState::new(0, 3)), clock);
    let channel = Channel::text(ids.next_id().unwrap(), ids.next_id().unwrap(), "hot");
    let author = User::new(ids.next_id().unwrap(), "author", false);
    let f = Fixture { store, data, channel, author, ids };
    for i in 0..messages {
        f.write(&format!("m{i}")).await;
    }
    f
}

impl Fixture {
    async fn write(&self, content: &str) -> MessageId {
        let m = Message::new(self.ids.next_id().unwrap(), &self.channel, self.author.clone(), content.into(), None);
        self.data.apply(GuildWrite::PutMessage(m.clone())).await.unwrap();
        m.id
    }

    fn latest(&self) -> impl std::future::Future<Output = Result<Arc<Vec<Message>>>> + Send + 'static {
        let (data, channel) = (self.data.clone(), self.channel.clone());
        async move { data.history(&channel, HistoryQuery::Latest, 50).await }
    }

    /// Waits until the service has seen `n` history requests.
    async fn requests_seen(&self, n: u64) {
        for _ in 0..2000 {
            if self.data.metrics.history.requests.load(SeqCst) >= n
                && self.data.metrics.history.coalesced.load(SeqCst) + self.data.metrics.history.db_queries.load(SeqCst)
                    >= n
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("requests never reached the worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_reads_share_one_query() {
    let f = fixture(60).await;
    f.store.gated.store(true, SeqCst);
    let readers: Vec<_> = (0..100).map(|_| tokio::spawn(f.latest())).collect();
    f.requests_seen(100).await;
    f.store.open_gate();
    let first = readers.into_iter().map(|r| async { r.await.unwrap() });
    let answers = futures_join(first).await;
    for a in &answers {
        let messages = a.as_ref().unwrap();
        assert_eq!(messages.len(), 50);
        assert_eq!(messages[0].content, "m59");
    }
    assert_eq!(f.data.metrics.history.db_queries.load(SeqCst), 1);
    assert_eq!(f.data.metrics.history.coalesced.load(SeqCst), 99);
    assert_eq!(f.store.partition_queries.load(SeqCst), 1, "one history walk of one bucket");
    // A different query is not merged with it.
    let other = f.data.history(&f.channel, HistoryQuery::Latest, 10).await;
    assert_eq!(other.as_ref().unwrap().len(), 10);
    assert_eq!(f.data.metrics.history.db_queries.load(SeqCst), 2);
}

async fn futures_join<T>(futs: impl Iterator<Item = impl std::future::Future<Output = T>>) -> Vec<T> {
    let mut out = Vec::new();
    for f in futs {
        out.push(f.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reaches_every_waiter() {
    let f = fixture(5).await;
    f.store.gated.store(true, SeqCst);
    f.store.fail.store(true, SeqCst);
    let readers: Vec<_> = (0..20).map(|_| tokio::spawn(f.latest())).collect();
    f.requests_seen(20).await;
    f.store.open_gate();
    for r in readers {
        assert!(matches!(r.await.unwrap(), Err(StoreError::Unavailable(_))));
    }
    assert_eq!(f.data.metrics.history.db_queries.load(SeqCst), 1);
    assert_eq!(f.data.metrics.history.errors.load(SeqCst), 20);
    // The failure is not cached: the next read queries again and succeeds.
    f.store.fail.store(false, SeqCst);
    assert_eq!(f.latest().await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_waiter_or_leader_does_not_cancel_the_others() {
    let f = fixture(3).await;
    f.store.gated.store(true, SeqCst);
    let leader = tokio::spawn(f.latest());
    f.requests_seen(1).await;
    let waiter = tokio::spawn(f.latest());
    let survivor = tokio::spawn(f.latest());
    f.requests_seen(3).await;
    waiter.abort(); // a client that disconnected
    leader.abort(); // even the one that started the query
    tokio::time::sleep(Duration::from_millis(20)).await;
    f.store.open_gate();
    let answer = tokio::time::timeout(Duration::from_secs(5), survivor).await.expect("answered").unwrap();
    assert_eq!(answer.as_ref().unwrap().len(), 3);
    assert_eq!(f.data.metrics.history.db_queries.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_nobody_waits_for_is_cancelled() {
    let f = fixture(3).await;
    f.store.gated.store(true, SeqCst);
    let only = tokio::spawn(f.latest());
    f.requests_seen(1).await;
    only.abort();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The abandoned flight is gone: a new read starts a new query instead of joining it.
    let again = tokio::spawn(f.latest());
    f.requests_seen(2).await;
    assert_eq!(f.data.metrics.history.db_queries.load(SeqCst), 2);
    f.store.open_gate();
    assert_eq!(again.await.unwrap().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_an_acknowledged_write_sees_it() {
    read_after_write(fixture(10).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_an_acknowledged_write_sees_it_with_lingering_answers() {
    read_after_write(fixture_lingering(10, Duration::from_millis(50)).await).await;
}

/// A finished query's answer serves identical reads that come later (within the linger),
/// until a write to the channel is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_answer_lingers_until_the_channel_is_written() {
    let f = fixture_lingering(10, Duration::from_secs(30)).await;
    let queries = || f.data.metrics.history.db_queries.load(SeqCst);
    assert_eq!(f.latest().await.unwrap()[0].content, "m9");
    assert_eq!(f.latest().await.unwrap()[0].content, "m9");
    assert_eq!(f.latest().await.unwrap()[0].content, "m9");
    assert_eq!(queries(), 1, "one after the other, within the linger: one query");
    f.write("new").await;
    assert_eq!(f.latest().await.unwrap()[0].content, "new", "the write ended the lingering answer");
    assert_eq!(queries(), 2);
    let other = f.data.history(&f.channel, HistoryQuery::Latest, 10).await.unwrap();
    assert_eq!((other.len(), queries()), (10, 3), "another query of the channel is its own");
}

/// The linger in virtual time (tokio's clock, paused): an answer is taken until exactly
/// `linger` after its query finished, and not a millisecond after.
#[tokio::test(start_paused = true)]
async fn a_lingering_answer_is_taken_until_its_time_is_up() {
    let linger = Duration::from_millis(40);
    let f = fixture_lingering(10, linger).await;
    let queries = || f.data.metrics.history.db_queries.load(SeqCst);
    f.latest().await.unwrap();
    assert_eq!(queries(), 1);
    tokio::time::advance(linger - Duration::from_millis(1)).await;
    f.latest().await.unwrap();
    assert_eq!(queries(), 1, "within the linger: the answer is taken");
    tokio::time::advance(Duration::from_millis(1)).await;
    f.latest().await.unwrap();
    assert_eq!(queries(), 2, "at the end of the linger: a query of its own");
}

async fn read_after_write(f: Fixture) {
    let f = Arc::new(f);
    // Slow queries and a crowd of identical readers keep a query in flight almost always,
    // which is when a stale coalesced answer could be handed out.
    f.store.delay_ms.store(3, SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let crowd: Vec<_> = (0..8)
        .map(|_| {
            let (f, stop) = (f.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    let _ = f.latest().await;
                }
            })
        })
        .collect();
    for i in 0..40 {
        let id = f.write(&format!("w{i}")).await;
        let answer = f.latest().await;
        let newest = &answer.as_ref().unwrap()[0];
        assert_eq!(newest.id, id, "read {i} started after the write was acknowledged and must see it");
    }
    stop.store(true, SeqCst);
    for c in crowd {
        c.await.unwrap();
    }
    assert!(f.data.metrics.history.coalesced.load(SeqCst) > 0, "the crowd did coalesce");
}

/// Unique, increasing ids for the fixture (the runtime's generator is a layer above), on
/// the fixture's clock, which moves on a millisecond when one's sequence is used up.
struct Ids(std::sync::Mutex<IdState>, Arc<ManualClock>);

impl Ids {
    fn next_id(&self) -> Result<guildhall_core::Snowflake, guildhall_core::snowflake::NextIdError> {
        let mut state = self.0.lock().unwrap();
        loop {
            match state.next(self.1.unix_ms()) {
                Err(guildhall_core::snowflake::NextIdError::SequenceExhausted) => self.1.advance(1),
                other => return other,
            }
        }
    }
}
