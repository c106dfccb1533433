//! Abuse limits at the edges, per user and per IP address: REST route buckets and the
//! global limits (Discord's, with its `X-RateLimit-*` headers), invalid requests per
//! address, gateway connects per address, IDENTIFY spacing and the daily session starts,
//! and open connections per address. The bookkeeping is the pure fixed-window table of
//! [`guildhall_core::ratelimit`]; this module shards it behind mutexes (a request takes
//! one lock: its subject's shard holds all of the subject's windows) and reads the clock.

use guildhall_core::clock::Clock;
use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use guildhall_core::model::UserId;
use guildhall_core::ratelimit::{Rate, Refusal, Standing, Windows};

use crate::config::RateLimitsConfig;

/// IDENTIFYs allowed per user per day, as Discord's `session_start_limit`.
pub const SESSION_STARTS_PER_DAY: u32 = 1000;
const SESSION_STARTS: Rate = Rate::new(SESSION_STARTS_PER_DAY, 24 * 3_600_000);

/// A client address as limits see it: IPv4 whole, IPv6 by its /64 (one host usually holds
/// a whole /64, so counting single IPv6 addresses would count nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(u128);

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(u32::from(v4) as u128),
                None => IpKey(u128::from(v6) & !((1u128 << 64) - 1) | (1 << 32)),
            },
        }
    }
}

/// Who a limit counts: the token's user, or the address of a request without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    User(UserId),
    Ip(IpKey),
}

/// REST routes that share a limit, as Discord's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Auth,
    MessageCreate,
    MessageEdit,
    MessageDelete,
    Reactions,
    Typing,
    MessageReads,
    /// Message searches (per guild or channel).
    Search,
    /// Searches of all of the caller's DMs (once for the caller).
    DmSearch,
    GuildCreate,
    GuildManage,
    InviteCreate,
    InviteLookup,
    InviteAccept,
    DmOpen,
    PluginUpload,
    /// Reads of guilds, channels, users, invite lists and the gateway: no limit of their
    /// own (the caller's global limit counts them).
    Reads,
    /// Writes without a limit of their own (one's applications, adding a bot, leaving a
    /// guild, revoking an invite): the caller's global limit counts them.
    Writes,
}

impl Bucket {
    /// The `X-RateLimit-Bucket` value: the same for every route of the bucket, whatever
    /// channel or guild (libraries key their own state by it plus the major parameter).
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Auth => "auth",
            Bucket::MessageCreate => "message_create",
            Bucket::MessageEdit => "message_edit",
            Bucket::MessageDelete => "message_delete",
            Bucket::Reactions => "reactions",
            Bucket::Typing => "typing",
            Bucket::MessageReads => "message_reads",
            Bucket::Search => "message_search",
            Bucket::DmSearch => "dm_search",
            Bucket::GuildCreate => "guild_create",
            Bucket::GuildManage => "guild_manage",
            Bucket::InviteCreate => "invite_create",
            Bucket::InviteLookup => "invite_lookup",
            Bucket::InviteAccept => "invite_accept",
            Bucket::DmOpen => "dm_open",
            Bucket::PluginUpload => "plugin_upload",
            Bucket::Reads => "reads",
            Bucket::Writes => "writes",
        }
    }

    /// Whether a route's limit is kept per channel or guild in its path (Discord's major
    /// parameter), or once for the caller.
    pub fn per_major(self) -> bool {
        matches!(
            self,
            Bucket::MessageCreate
                | Bucket::MessageEdit
                | Bucket::MessageDelete
                | Bucket::Reactions
                | Bucket::Typing
                | Bucket::MessageReads
                | Bucket::Search
                | Bucket::GuildManage
                | Bucket::InviteCreate
        )
    }

    /// The bucket's own limit, if it has one.
    fn rate(self, c: &RateLimitsConfig) -> Option<Rate> {
        Some(match self {
            Bucket::Auth => c.auth,
            Bucket::MessageCreate => c.message_create,
            Bucket::MessageEdit => c.message_edit,
            Bucket::MessageDelete => c.message_delete,
            Bucket::Reactions => c.reactions,
            Bucket::Typing => c.typing,
            Bucket::MessageReads => c.message_reads,
            Bucket::Search | Bucket::DmSearch => c.search,
            Bucket::GuildCreate => c.guild_create,
            Bucket::GuildManage => c.guild_manage,
            Bucket::InviteCreate => c.invite_create,
            Bucket::InviteLookup => c.invite_lookup,
            Bucket::InviteAccept => c.invite_accept,
            Bucket::DmOpen => c.dm_open,
            Bucket::PluginUpload => c.plugin_upload,
            Bucket::Reads | Bucket::Writes => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    /// All REST requests of the subject.
    Global,
    /// A route bucket, per major parameter (the channel or guild in the path; 0 if none).
    Route(Bucket, u64),
    /// 401, 403 and 429 answers to an address.
    Invalid,
    GatewayConnect,
    Identify,
    SessionStart,
    /// Op 8 (Request Guild Members), per guild.
    MemberRequest(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    subject: Subject,
    scope: Scope,
}

/// A refused REST request: what the 429 says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// The global limit (of the user or the address), not a route's.
    pub global: bool,
    /// The route's bucket and standing, for a route refusal.
    pub route: Option<(Bucket, Standing)>,
    pub retry_after_ms: u64,
}

const SHARDS: usize = 16;

/// Open TCP connections per address (entries removed at zero).
type OpenConnections = Arc<Mutex<HashMap<IpKey, usize>>>;

pub struct Limits {
    config: RateLimitsConfig,
    shards: Box<[Mutex<Windows<Key>>]>,
    hasher: std::collections::hash_map::RandomState,
    /// The process's clock; the windows count in its monotonic milliseconds.
    clock: Arc<dyn Clock>,
    connections: OpenConnections,
}

impl Limits {
    pub fn new(config: RateLimitsConfig, clock: Arc<dyn Clock>) -> Limits {
        let per_shard = (config.max_tracked / SHARDS).max(1);
        Limits {
            shards: (0..SHARDS).map(|_| Mutex::new(Windows::new(per_shard))).collect(),
            config,
            hasher: Default::default(),
            clock,
            connections: Default::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Milliseconds on this process's monotonic clock (what the windows count in).
    fn now_ms(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    fn shard(&self, subject: &Subject) -> std::sync::MutexGuard<'_, Windows<Key>> {
        let i = self.hasher.hash_one(subject) as usize % SHARDS;
        self.shards[i].lock_unpoisoned()
    }

    /// Whether `ip` is refused everything for now (past its invalid requests): the refusal.
    /// Asked first, before the request costs anything (even its token lookup).
    pub fn banned(&self, ip: IpKey) -> Option<Limited> {
        if !self.config.enabled {
            return None;
        }
        let key = Key { subject: Subject::Ip(ip), scope: Scope::Invalid };
        let wait = self.shard(&key.subject).spent(&key, self.now_ms())?;
        Some(Limited { global: true, route: None, retry_after_ms: wait })
    }

    /// Counts a REST request (after [`Limits::banned`]): the subject's global limit, then
    /// the route's bucket. `Ok` carries the route's standing (for the headers); nothing is
    /// counted or returned when limits are off.
    pub fn rest(
        &self,
        subject: Subject,
        ip: IpKey,
        route: Option<(Bucket, u64)>,
    ) -> Result<Option<(Bucket, Standing)>, Limited> {
        if !self.config.enabled {
            return Ok(None);
        }
        let now = self.now_ms();
        let global = |retry_after_ms| Limited { global: true, route: None, retry_after_ms };
        // Register and login count per address, whoever says they are.
        let subject = if matches!(route, Some((Bucket::Auth, _))) { Subject::Ip(ip) } else { subject };
        let global_rate = match subject {
            Subject::User(_) => self.config.global,
            Subject::Ip(_) => self.config.per_ip,
        };
        let mut windows = self.shard(&subject);
        windows.take(&Key { subject, scope: Scope::Global }, global_rate, now).map_err(|r| global(retry_after(r)))?;
        let Some((bucket, major)) = route else { return Ok(None) };
        let Some(rate) = bucket.rate(&self.config) else { return Ok(None) };
        match windows.take(&Key { subject, scope: Scope::Route(bucket, major) }, rate, now) {
            Ok(standing) => Ok(Some((bucket, standing))),
            Err(Refusal::Limited(standing)) => {
                Err(Limited { global: false, route: Some((bucket, standing)), retry_after_ms: standing.reset_after_ms })
            }
            Err(full @ Refusal::Full { .. }) => Err(global(retry_after(full))),
        }
    }

    /// Counts a 401, 403 or 429 answer to `ip`.
    pub fn count_invalid(&self, ip: IpKey) {
        if self.config.enabled {
            let key = Key { subject: Subject::Ip(ip), scope: Scope::Invalid };
            let _ = self.shard(&key.subject).take(&key, self.config.invalid_requests, self.now_ms());
        }
    }

    /// Counts a gateway connection from `ip`: `Err(retry_after_ms)` past the limit.
    pub fn gateway_connect(&self, ip: IpKey) -> Result<(), u64> {
        if !self.config.enabled {
            return Ok(());
        }
        let key = Key { subject: Subject::Ip(ip), scope: Scope::GatewayConnect };
        self.shard(&key.subject).take(&key, self.config.gateway_connects, self.now_ms()).map(drop).map_err(retry_after)
    }

    /// Counts an IDENTIFY of `user` against its spacing: `Err(wait_ms)` when the user's
    /// window is spent (the IDENTIFY may wait that long and ask again).
    pub fn identify(&self, user: UserId) -> Result<(), u64> {
        if !self.config.enabled {
            return Ok(());
        }
        let key = Key { subject: Subject::User(user), scope: Scope::Identify };
        self.shard(&key.subject).take(&key, self.config.identify, self.now_ms()).map(drop).map_err(retry_after)
    }

    /// Counts an op 8 request of `user` for `guild`: `Err(retry_after_ms)` past the limit.
    pub fn member_request(&self, user: UserId, guild: u64) -> Result<(), u64> {
        if !self.config.enabled {
            return Ok(());
        }
        let key = Key { subject: Subject::User(user), scope: Scope::MemberRequest(guild) };
        self.shard(&key.subject).take(&key, self.config.member_requests, self.now_ms()).map(drop).map_err(retry_after)
    }

    /// The `max_concurrency` of `/gateway/bot`: IDENTIFYs per 5 s window.
    pub fn identify_concurrency(&self) -> u32 {
        self.config.identify.limit
    }

    /// Counts a session start against the user's daily budget; false if it is spent.
    pub fn take_session_start(&self, user: UserId) -> bool {
        let key = Key { subject: Subject::User(user), scope: Scope::SessionStart };
        self.shard(&key.subject).take(&key, SESSION_STARTS, self.now_ms()).is_ok()
    }

    /// (remaining, reset_after_ms) of the user's daily session starts.
    pub fn session_starts_left(&self, user: UserId) -> (u32, u64) {
        let key = Key { subject: Subject::User(user), scope: Scope::SessionStart };
        let now = self.now_ms();
        match self.shard(&key.subject).standing(&key, now) {
            Some(standing) => (standing.remaining, standing.reset_after_ms),
            None => (SESSION_STARTS.limit, SESSION_STARTS.window_ms),
        }
    }

    /// Holds a connection slot of `ip` while the guard lives; `None` when the address holds
    /// `connections_per_ip` already.
    pub fn open_connection(&self, ip: IpKey) -> Option<ConnectionSlot> {
        let cap = self.config.connections_per_ip;
        if !self.config.enabled || cap == 0 {
            return Some(ConnectionSlot(None));
        }
        let mut open = self.connections.lock_unpoisoned();
        let count = open.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot(Some((ip, self.connections.clone()))))
    }
}

fn retry_after(refusal: Refusal) -> u64 {
    match refusal {
        Refusal::Limited(standing) => standing.reset_after_ms,
        Refusal::Full { retry_after_ms } => retry_after_ms,
    }
}

/// What one accepted TCP connection holds while it is open: its place under
/// `gateway.max_connections` and its address's slot. Shared (`Arc`) between the HTTP
/// connection and, after an upgrade, the WebSocket session that outlives it.
pub struct ConnectionHold {
    pub global: tokio::sync::OwnedSemaphorePermit,
    pub per_ip: ConnectionSlot,
}

/// One open connection of an address, given back when dropped.
pub struct ConnectionSlot(Option<(IpKey, OpenConnections)>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some((ip, connections)) = self.0.take() {
            let mut open = connections.lock_unpoisoned();
            if let Some(count) = open.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_core::Snowflake;

    fn limits(edit: impl FnOnce(&mut RateLimitsConfig)) -> Limits {
        let mut config = RateLimitsConfig::default();
        edit(&mut config);
        Limits::new(config, Arc::new(guildhall_core::clock::ManualClock::new(0)))
    }

    const IP: IpKey = IpKey(7);
    const ALICE: Subject = Subject::User(Snowflake(1));

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::from(a), IpKey::from(b));
        assert_ne!(IpKey::from(a), IpKey::from(c));
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(IpKey::from(v4), IpKey::from(mapped));
        assert_ne!(IpKey::from(v4), IpKey::from("::a01:203".parse::<IpAddr>().unwrap()), "not confused with a v6 /64");
    }

    #[test]
    fn a_route_bucket_counts_per_channel_and_the_global_per_user() {
        let l = limits(|c| {
            c.message_create = Rate::new(2, 60_000);
            c.global = Rate::new(4, 60_000);
        });
        let create = |channel| l.rest(ALICE, IP, Some((Bucket::MessageCreate, channel)));
        assert_eq!(create(10).unwrap().unwrap().1.remaining, 1);
        assert_eq!(create(10).unwrap().unwrap().1.remaining, 0);
        let refused = create(10).unwrap_err();
        assert!(!refused.global);
        assert_eq!(refused.route.unwrap().0, Bucket::MessageCreate);
        assert_eq!(refused.retry_after_ms, 60_000, "the window's whole minute: no time has passed");
        assert!(create(11).is_ok(), "another channel has its own window");
        // Four requests in all (the refused one counted): the global limit is spent.
        let global = l.rest(ALICE, IP, None).unwrap_err();
        assert!(global.global && global.route.is_none());
        assert!(l.rest(Subject::User(Snowflake(2)), IP, None).is_ok(), "another user has their own");
    }

    #[test]
    fn auth_counts_per_address_and_invalid_answers_ban_the_address() {
        let l = limits(|c| {
            c.auth = Rate::new(1, 60_000);
            c.invalid_requests = Rate::new(2, 60_000);
        });
        assert!(l.rest(Subject::Ip(IP), IP, Some((Bucket::Auth, 0))).is_ok());
        assert!(l.rest(ALICE, IP, Some((Bucket::Auth, 0))).is_err(), "a token does not buy more logins");
        assert!(l.rest(ALICE, IpKey(8), Some((Bucket::Auth, 0))).is_ok());
        l.count_invalid(IP);
        assert!(l.rest(ALICE, IP, None).is_ok());
        assert!(l.banned(IP).is_none(), "one more to go");
        l.count_invalid(IP);
        let banned = l.banned(IP).expect("refused");
        assert!(banned.global && banned.retry_after_ms > 59_000, "the address is refused everything");
        assert!(l.banned(IpKey(8)).is_none(), "only that address");
    }

    #[test]
    fn nothing_is_counted_when_off_but_session_starts() {
        let l = limits(|c| {
            c.enabled = false;
            c.global = Rate::new(1, 60_000);
            c.gateway_connects = Rate::new(1, 60_000);
            c.connections_per_ip = 1;
        });
        for _ in 0..5 {
            assert_eq!(l.rest(ALICE, IP, Some((Bucket::MessageCreate, 1))), Ok(None));
            assert!(l.gateway_connect(IP).is_ok());
        }
        let _slots: Vec<_> = (0..5).map(|_| l.open_connection(IP).expect("no cap")).collect();
        let user = Snowflake(1);
        assert!(l.take_session_start(user));
        assert_eq!(l.session_starts_left(user).0, SESSION_STARTS_PER_DAY - 1);
    }

    #[test]
    fn connection_slots_are_capped_per_address_and_given_back() {
        let l = limits(|c| c.connections_per_ip = 2);
        let a = l.open_connection(IP).unwrap();
        let _b = l.open_connection(IP).unwrap();
        assert!(l.open_connection(IP).is_none());
        assert!(l.open_connection(IpKey(8)).is_some());
        drop(a);
        assert!(l.open_connection(IP).is_some());
    }

    #[test]
    fn gateway_connects_and_identify_spacing() {
        let l = limits(|c| {
            c.gateway_connects = Rate::new(2, 60_000);
            c.identify = Rate::new(1, 5_000);
        });
        assert!(l.gateway_connect(IP).is_ok() && l.gateway_connect(IP).is_ok());
        assert!(l.gateway_connect(IP).unwrap_err() > 59_000);
        let user = Snowflake(1);
        assert!(l.identify(user).is_ok());
        let wait = l.identify(user).unwrap_err();
        assert!(wait > 4_900 && wait <= 5_000, "{wait}");
        assert!(l.identify(Snowflake(2)).is_ok());
    }
}
