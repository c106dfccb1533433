//! The conformance suite every storage backend must pass.
//!
//! Each check takes a `&dyn Storage` and creates its own rows under fresh ids, so checks can
//! run concurrently and repeatedly against a shared database. A backend runs them all with
//! [`conformance_tests!`](crate::conformance_tests), which makes one `#[tokio::test]` each.

use std::sync::atomic::{AtomicU64, Ordering};

use guildhall_core::guild::{GuildWrite, InviteUse};
use guildhall_core::model::{
    audit_action, AuditLogChange, AuditLogEntry, Channel, Emoji, Guild, Invite, Member, Message, PluginKind,
    PluginRecord, PluginTimer, User, UserRecord, CHANNEL_DM,
};
use guildhall_core::snowflake::{Snowflake, BUCKET_SIZE_MS, DISCORD_EPOCH_MS};

use guildhall_core::stream::{LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};

use crate::{history, HistoryQuery, IdBounds, Order, Storage, StoreError};

/// The wall clock, read here for one thing: ids unique across runs against a database
/// that outlives them (a developer's Cassandra). What a backend does at a time is asked
/// with the time given (`audit_log`, `put_component`, `collect_components`).
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Fresh, unique, increasing ids: the current time, 10 bits of the process id (checks of
/// several processes share one database), then a sequence (the next id if the clock has
/// not moved on).
fn fresh_id() -> Snowflake {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let base = Snowflake::from_unix_ms(now_ms()).0 | (u64::from(std::process::id()) & 0x3FF) << 12;
    let previous = LAST.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(base.max(last + 1)));
    Snowflake(base.max(previous.expect("always Some") + 1))
}

/// An id at a given Unix time with chosen low bits (to place messages in past buckets).
fn id_at(unix_ms: u64, low: u64) -> Snowflake {
    Snowflake(Snowflake::from_unix_ms(unix_ms).0 | (low & 0x3F_FFFF))
}

fn user(name: &str) -> User {
    let id = fresh_id();
    User::new(id, format!("{name}{}", id.0), false)
}

fn text_channel(id: Snowflake, guild: Snowflake, name: &str) -> Channel {
    Channel::text(id, guild, name)
}

fn member(u: &User) -> Member {
    Member::new(u.clone(), "2026-01-01T00:00:00.000000+00:00".into())
}

fn message(channel: &Channel, id: Snowflake, author: &User, content: &str) -> Message {
    Message::new(id, channel, author.clone(), content.into(), None)
}

fn ids(ms: &[Message]) -> Vec<Snowflake> {
    ms.iter().map(|m| m.id).collect()
}

fn current_bucket() -> u32 {
    Snowflake::from_unix_ms(now_ms()).bucket()
}

pub async fn users_and_tokens(store: &dyn Storage) {
    let u = user("Alice");
    let record = UserRecord::person(u.clone(), "$argon2id$fake".into());
    store.create_user(record.clone()).await.unwrap();
    assert_eq!(store.user(u.id).await.unwrap().unwrap().user, u);
    let by_name = store.user_by_username(&u.username.to_uppercase()).await.unwrap();
    assert_eq!(by_name.unwrap().user.id, u.id, "usernames are case-insensitive");
    let mut clash = record.clone();
    clash.user.id = fresh_id();
    clash.user.username = u.username.to_lowercase();
    assert!(matches!(store.create_user(clash.clone()).await, Err(StoreError::Conflict(_))));
    assert!(store.user(clash.user.id).await.unwrap().is_none(), "a refused user is not half-written");
    assert!(store.user(fresh_id()).await.unwrap().is_none());
    // A user is created only if absent: an id that collided (ids issued twice) never
    // overwrites an account, and the refused username stays free.
    let mut same_id = record.clone();
    same_id.user.username = format!("other-{}", fresh_id());
    same_id.password_hash = "$argon2id$someone-else".into();
    assert!(matches!(store.create_user(same_id.clone()).await, Err(StoreError::Conflict(_))));
    let kept = store.user(u.id).await.unwrap().unwrap();
    assert_eq!((kept.user, kept.password_hash), (u.clone(), record.password_hash.clone()), "the account is untouched");
    assert!(store.user_by_username(&same_id.user.username).await.unwrap().is_none());

    // A record is updated in place (a bot's application), its username fixed.
    let mut updated = record.clone();
    updated.application = Some(guildhall_core::model::Application {
        id: u.id,
        name: "app".into(),
        description: String::new(),
        owner_id: fresh_id(),
        flags: 1 << 18,
        bot_public: true,
    });
    store.update_user(updated.clone()).await.unwrap();
    assert_eq!(store.user(u.id).await.unwrap().unwrap().application, updated.application);
    let mut renamed = updated.clone();
    renamed.user.username = format!("{}x", u.username);
    assert!(matches!(store.update_user(renamed).await, Err(StoreError::Conflict(_))));
    let mut unknown = updated;
    unknown.user.id = fresh_id();
    assert!(matches!(store.update_user(unknown).await, Err(StoreError::NotFound)));

    let token = format!("tok-{}", fresh_id());
    assert_eq!(store.token_user(&token).await.unwrap(), None);
    store.put_token(&token, u.id).await.unwrap();
    assert_eq!(store.token_user(&token).await.unwrap(), Some(u.id));
    assert_eq!(store.token_user(&format!("{token}x")).await.unwrap(), None);
}

pub async fn guilds_channels_members(store: &dyn Storage) {
    let owner = user("owner");
    let gid = fresh_id();
    let guild = Guild::new(gid, "g", owner.id);
    let general = text_channel(fresh_id(), gid, "general");
    store.create_guild(guild.clone(), member(&owner), vec![general.clone()]).await.unwrap();
    assert_eq!(store.guild(gid).await.unwrap(), Some(guild.clone()));
    assert_eq!(store.guild_channels(gid).await.unwrap(), vec![general.clone()]);
    assert_eq!(store.channel(general.id).await.unwrap(), Some(general.clone()));
    assert_eq!(store.user_guilds(owner.id).await.unwrap(), vec![gid]);
    assert_eq!(store.member(gid, owner.id).await.unwrap().unwrap().user, owner);

    // A guild id issued twice never replaces the guild (nor adds its would-be owner to it).
    let intruder = user("intruder");
    let clash = Guild::new(gid, "clash", intruder.id);
    let clash_channel = text_channel(fresh_id(), gid, "clash");
    let refused = store.create_guild(clash, member(&intruder), vec![clash_channel.clone()]).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(store.guild(gid).await.unwrap(), Some(guild.clone()));
    assert_eq!(store.guild_channels(gid).await.unwrap(), vec![general.clone()]);
    assert!(store.channel(clash_channel.id).await.unwrap().is_none());
    assert!(store.member(gid, intruder.id).await.unwrap().is_none());
    assert!(store.user_guilds(intruder.id).await.unwrap().is_empty());

    let mut renamed = store.guild(gid).await.unwrap().unwrap();
    renamed.name = "renamed".into();
    renamed.moderation_fail_closed = true;
    store.apply(GuildWrite::UpdateGuild(renamed.clone())).await.unwrap();
    assert_eq!(store.guild(gid).await.unwrap(), Some(renamed));
    // An update never creates a guild.
    let never_made = Guild::new(fresh_id(), "never made", owner.id);
    let update = store.apply(GuildWrite::UpdateGuild(never_made.clone())).await;
    assert!(matches!(update, Err(StoreError::NotFound)), "{update:?}");
    assert!(store.guild(never_made.id).await.unwrap().is_none());

    let random = text_channel(fresh_id(), gid, "random");
    store.apply(GuildWrite::CreateChannel(random.clone())).await.unwrap();
    assert_eq!(store.guild_channels(gid).await.unwrap(), vec![general, random]);

    let mut users = vec![owner.clone()];
    for i in 0..5 {
        let u = user(&format!("m{i}"));
        store.apply(GuildWrite::AddMember { guild_id: gid, member: member(&u), invite: None }).await.unwrap();
        users.push(u);
    }
    // Adding twice is idempotent.
    store.apply(GuildWrite::AddMember { guild_id: gid, member: member(&users[1]), invite: None }).await.unwrap();
    users.sort_by_key(|u| u.id);
    let page1 = store.members(gid, None, 4).await.unwrap();
    let page2 = store.members(gid, Some(page1.last().unwrap().user.id), 4).await.unwrap();
    let got: Vec<Snowflake> = page1.iter().chain(&page2).map(|m| m.user.id).collect();
    assert_eq!(got, users.iter().map(|u| u.id).collect::<Vec<_>>(), "ordered by user id, paged by after");
    assert_eq!(page2.len(), 2);

    let leaver = users.iter().find(|u| u.id != owner.id).unwrap().clone();
    store.apply(GuildWrite::RemoveMember { guild_id: gid, user_id: leaver.id }).await.unwrap();
    assert!(store.member(gid, leaver.id).await.unwrap().is_none());
    assert!(store.user_guilds(leaver.id).await.unwrap().is_empty());
    assert_eq!(store.members(gid, None, 100).await.unwrap().len(), 5);
    assert!(store.guild(fresh_id()).await.unwrap().is_none());
}

pub async fn invites(store: &dyn Storage) {
    let code = format!("c{}", fresh_id());
    let invite = Invite {
        code: code.clone(),
        guild_id: fresh_id(),
        channel_id: fresh_id(),
        inviter_id: fresh_id(),
        created_at: "2026-01-01T00:00:00.000000+00:00".into(),
        max_age: 0,
        max_uses: 0,
        uses: 0,
        expires_unix_ms: 0,
    };
    assert!(store.invite(&code).await.unwrap().is_none());
    store.create_invite(invite.clone()).await.unwrap();
    assert_eq!(store.invite(&code).await.unwrap(), Some(invite.clone()));
    // The same code for another guild: refused, and the first invite stays.
    let clash = Invite { guild_id: fresh_id(), channel_id: fresh_id(), ..invite.clone() };
    assert!(matches!(store.create_invite(clash).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.invite(&code).await.unwrap(), Some(invite.clone()));

    // Uses are counted up to max_uses, one at a time, even when joins come at once.
    let limited = Invite { code: format!("u{}", fresh_id()), max_uses: 3, ..invite.clone() };
    store.create_invite(limited.clone()).await.unwrap();
    let now = 1_000;
    let first = store.use_invite(&limited.code, now).await.unwrap().expect("usable");
    assert_eq!(first.uses, 1);
    let code = limited.code.as_str();
    let racing = tokio::join!(
        store.use_invite(code, now),
        store.use_invite(code, now),
        store.use_invite(code, now),
        store.use_invite(code, now),
    );
    let mut won: Vec<u32> = [racing.0, racing.1, racing.2, racing.3]
        .into_iter()
        .filter_map(|attempt| attempt.unwrap().map(|used| used.uses))
        .collect();
    won.sort();
    assert_eq!(won, [2, 3], "exactly the two uses left were taken");
    assert_eq!(store.invite(code).await.unwrap().unwrap().uses, 3);
    assert!(store.use_invite(code, now).await.unwrap().is_none(), "used up");
    // Expiry: usable before, not at or after. (Another guild's, out of the lists below: a
    // use keeps what is left of the expiry, so on Scylla the invite is gone a second later.)
    let expiring =
        Invite { code: format!("e{}", fresh_id()), guild_id: fresh_id(), expires_unix_ms: 5_000, ..invite.clone() };
    store.create_invite(expiring.clone()).await.unwrap();
    assert!(store.use_invite(&expiring.code, 4_999).await.unwrap().is_some());
    assert!(store.use_invite(&expiring.code, 5_000).await.unwrap().is_none());
    assert!(store.use_invite("never-made", now).await.unwrap().is_none());
    // A guild's invites, usable or not, in code order; another guild's clash is not one.
    let listed = |invites: Vec<Invite>| invites.into_iter().map(|i| i.code).collect::<Vec<_>>();
    let mut codes = vec![invite.code.clone(), limited.code.clone()];
    codes.sort();
    assert_eq!(listed(store.guild_invites(invite.guild_id, 100).await.unwrap()), codes);
    assert_eq!(listed(store.guild_invites(invite.guild_id, 1).await.unwrap()), codes[..1]);
    let used_up = store.guild_invites(invite.guild_id, 100).await.unwrap();
    assert_eq!(used_up.iter().find(|i| i.code == limited.code).map(|i| i.uses), Some(3), "with their uses");
    assert!(store.guild_invites(fresh_id(), 100).await.unwrap().is_empty());
    // Revocation.
    assert_eq!(store.delete_invite(&invite.code).await.unwrap(), Some(invite.clone()));
    assert!(store.invite(&invite.code).await.unwrap().is_none());
    assert!(store.delete_invite(&invite.code).await.unwrap().is_none());
    assert!(store.use_invite(&invite.code, now).await.unwrap().is_none());
    codes.retain(|c| *c != invite.code);
    assert_eq!(listed(store.guild_invites(invite.guild_id, 100).await.unwrap()), codes, "no longer listed");
}

/// A join by invite writes the membership and one use of the invite together: with an
/// invite that is used up, expired or another guild's, it writes neither.
pub async fn joins_by_invite(store: &dyn Storage) {
    let (gid, other_gid) = (fresh_id(), fresh_id());
    let invite = |guild_id, max_uses, expires_unix_ms| Invite {
        code: format!("j{}", fresh_id()),
        guild_id,
        channel_id: fresh_id(),
        inviter_id: fresh_id(),
        created_at: "2026-01-01T00:00:00.000000+00:00".into(),
        max_age: 0,
        max_uses,
        uses: 0,
        expires_unix_ms,
    };
    let (once, elsewhere, brief) = (invite(gid, 1, 0), invite(other_gid, 0, 0), invite(gid, 0, 600_000));
    for i in [&once, &elsewhere, &brief] {
        store.create_invite(i.clone()).await.unwrap();
    }
    let join = |u: &User, code: &str, at_unix_ms| GuildWrite::AddMember {
        guild_id: gid,
        member: member(u),
        invite: Some(InviteUse { code: code.to_owned(), at_unix_ms }),
    };
    let (ann, ben, cid) = (user("ann"), user("ben"), user("cid"));
    let uses = |code: String| async move { store.invite(&code).await.unwrap().map(|i| i.uses) };

    assert!(matches!(store.apply(join(&ann, &elsewhere.code, 1_000)).await, Err(StoreError::NotFound)));
    assert_eq!((store.member(gid, ann.id).await.unwrap(), uses(elsewhere.code.clone()).await), (None, Some(0)));
    store.apply(join(&ann, &once.code, 1_000)).await.unwrap();
    assert!(store.member(gid, ann.id).await.unwrap().is_some());
    assert_eq!(uses(once.code.clone()).await, Some(1));
    assert!(matches!(store.apply(join(&ben, &once.code, 1_000)).await, Err(StoreError::NotFound)), "used up");
    assert_eq!((store.member(gid, ben.id).await.unwrap(), uses(once.code.clone()).await), (None, Some(1)));
    assert!(matches!(store.apply(join(&cid, &brief.code, 600_000)).await, Err(StoreError::NotFound)), "expired");
    assert!(store.member(gid, cid.id).await.unwrap().is_none());
    // In a batch, a refused join leaves the others as they are. (The join is made long
    // before `brief` expires: a store with TTLs keeps what is left of its life in real
    // time, and a second left could pass before the next read on a busy machine.)
    let results = store.apply_batch(vec![join(&ben, &once.code, 1_000), join(&cid, &brief.code, 4_000)]).await;
    assert!(matches!(results[..], [Err(StoreError::NotFound), Ok(())]), "{results:?}");
    assert!(store.member(gid, cid.id).await.unwrap().is_some() && store.member(gid, ben.id).await.unwrap().is_none());
    assert_eq!((uses(once.code.clone()).await, uses(brief.code.clone()).await), (Some(1), Some(1)));
}

pub async fn dm_channels(store: &dyn Storage) {
    let (a, b, c) = (user("a"), user("b"), user("c"));
    let first = store.get_or_create_dm(a.clone(), b.clone(), fresh_id()).await.unwrap();
    assert_eq!(first.kind, CHANNEL_DM);
    assert_eq!(first.recipients.len(), 2);
    let again = store.get_or_create_dm(b.clone(), a.clone(), fresh_id()).await.unwrap();
    assert_eq!(again.id, first.id, "same pair, either order: same channel");
    // Concurrent creation for a new pair converges on one channel.
    let (x, y) = tokio::join!(
        store.get_or_create_dm(a.clone(), c.clone(), fresh_id()),
        store.get_or_create_dm(c.clone(), a.clone(), fresh_id())
    );
    assert_eq!(x.unwrap().id, y.unwrap().id);
    assert_eq!(store.user_dms(a.id).await.unwrap().len(), 2);
    assert_eq!(store.user_dms(b.id).await.unwrap(), vec![first.clone()]);
    assert_eq!(store.channel(first.id).await.unwrap(), Some(first.clone()));

    let m = message(&first, fresh_id(), &a, "psst");
    store.apply(GuildWrite::PutMessage(m.clone())).await.unwrap();
    let got = history(store, &first, HistoryQuery::Latest, 10, current_bucket()).await.unwrap();
    assert_eq!(got, vec![m]);
}

/// Messages in buckets b, b+2, b+3 (b+1 empty), then every query kind across the gaps.
pub async fn history_across_buckets(store: &dyn Storage) {
    let start_ms = now_ms() - 45 * 24 * 3600 * 1000;
    let b0_start = DISCORD_EPOCH_MS + Snowflake::from_unix_ms(start_ms).bucket() as u64 * BUCKET_SIZE_MS;
    let low = fresh_id().0 & 0x3F_F000;
    let channel = text_channel(id_at(b0_start, low), fresh_id(), "history");
    let author = user("author");
    let mut all = Vec::new();
    for (bucket_offset, count) in [(0u64, 3u64), (2, 3), (3, 4)] {
        for i in 0..count {
            let at = b0_start + bucket_offset * BUCKET_SIZE_MS + 1_000 * (i + 1);
            let m = message(&channel, id_at(at, low | i), &author, &format!("b{bucket_offset} m{i}"));
            all.push(m);
        }
    }
    // Write out of order; storage must order by id.
    for m in all.iter().rev() {
        store.apply(GuildWrite::PutMessage(m.clone())).await.unwrap();
    }
    let b0 = channel.first_bucket();
    assert_eq!(all[0].id.bucket(), b0);
    assert_eq!(all[3].id.bucket(), b0 + 2);
    assert_eq!(all[9].id.bucket(), b0 + 3);
    let newest_first: Vec<Snowflake> = ids(&all).into_iter().rev().collect();
    let now = current_bucket();

    let latest = history(store, &channel, HistoryQuery::Latest, 50, now).await.unwrap();
    assert_eq!(ids(&latest), newest_first, "walks every bucket down to the first, past the empty one");
    assert_eq!(latest[0].content, "b3 m3");

    let latest5 = history(store, &channel, HistoryQuery::Latest, 5, now).await.unwrap();
    assert_eq!(ids(&latest5), newest_first[..5]);

    // Before the first message of bucket b+2: crosses the empty bucket into b.
    let before = history(store, &channel, HistoryQuery::Before(all[3].id), 10, now).await.unwrap();
    assert_eq!(ids(&before), vec![all[2].id, all[1].id, all[0].id]);
    let before2 = history(store, &channel, HistoryQuery::Before(all[5].id), 3, now).await.unwrap();
    assert_eq!(ids(&before2), vec![all[4].id, all[3].id, all[2].id]);
    // Before the largest id a client may send (Discord's 19 decimal digits, above i64::MAX):
    // everything (a store of signed 64-bit ids must not wrap it around to nothing).
    let before_any = Snowflake(guildhall_core::snowflake::MAX_DECIMAL);
    let before_all = history(store, &channel, HistoryQuery::Before(before_any), 50, now).await.unwrap();
    assert_eq!(ids(&before_all), newest_first, "before the largest id: every message");
    let after_any = history(store, &channel, HistoryQuery::After(before_any), 50, now).await.unwrap();
    assert!(after_any.is_empty(), "after the largest id: nothing");

    // After the last message of bucket b: the oldest ones after it, returned newest first.
    let after = history(store, &channel, HistoryQuery::After(all[2].id), 4, now).await.unwrap();
    assert_eq!(ids(&after), vec![all[6].id, all[5].id, all[4].id, all[3].id]);
    let after_all = history(store, &channel, HistoryQuery::After(all[9].id), 10, now).await.unwrap();
    assert!(after_all.is_empty());
    let after_start = history(store, &channel, HistoryQuery::After(Snowflake(0)), 2, now).await.unwrap();
    assert_eq!(ids(&after_start), vec![all[1].id, all[0].id]);

    // Around a message: it and its neighbours.
    let around = history(store, &channel, HistoryQuery::Around(all[3].id), 5, now).await.unwrap();
    assert_eq!(ids(&around), vec![all[5].id, all[4].id, all[3].id, all[2].id, all[1].id]);
    let around_gap = history(store, &channel, HistoryQuery::Around(Snowflake(all[2].id.0 + 1)), 2, now).await.unwrap();
    assert_eq!(ids(&around_gap), vec![all[3].id, all[2].id], "around an id with no message");

    // One partition at a time, both orders, with bounds.
    let bucket2 = store.messages_in_bucket(channel.id, b0 + 2, IdBounds::default(), Order::Asc, 10).await.unwrap();
    assert_eq!(ids(&bucket2), ids(&all[3..6]));
    let bounded = store
        .messages_in_bucket(
            channel.id,
            b0 + 3,
            IdBounds { after: Some(all[6].id), before: Some(all[9].id) },
            Order::Desc,
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(&bounded), vec![all[8].id, all[7].id]);
    assert!(store
        .messages_in_bucket(channel.id, b0 + 1, IdBounds::default(), Order::Desc, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.message(channel.id, all[4].id).await.unwrap().as_ref(), Some(&all[4]));
}

pub async fn edit_and_delete(store: &dyn Storage) {
    let channel = text_channel(fresh_id(), fresh_id(), "edits");
    let author = user("author");
    let m = message(&channel, fresh_id(), &author, "first");
    store.apply(GuildWrite::PutMessage(m.clone())).await.unwrap();
    let mut edited = m.clone();
    edited.content = "second".into();
    edited.edited_timestamp = Some("2026-01-02T00:00:00.000000+00:00".into());
    store.apply(GuildWrite::EditMessage(edited.clone())).await.unwrap();
    assert_eq!(store.message(channel.id, m.id).await.unwrap(), Some(edited));

    let mut ghost = m.clone();
    ghost.id = fresh_id();
    assert_eq!(store.apply(GuildWrite::EditMessage(ghost.clone())).await, Err(StoreError::NotFound));
    assert!(store.message(channel.id, ghost.id).await.unwrap().is_none(), "editing never creates");

    store.apply(GuildWrite::DeleteMessage { channel_id: channel.id, message_id: m.id }).await.unwrap();
    assert!(store.message(channel.id, m.id).await.unwrap().is_none());
    assert_eq!(
        store.apply(GuildWrite::DeleteMessage { channel_id: channel.id, message_id: m.id }).await,
        Err(StoreError::NotFound)
    );
    assert!(history(store, &channel, HistoryQuery::Latest, 10, current_bucket()).await.unwrap().is_empty());

    // A batch applies in order and answers each write on its own.
    let (a, b) = (message(&channel, fresh_id(), &author, "a"), message(&channel, fresh_id(), &author, "b"));
    let mut a2 = a.clone();
    a2.content = "a2".into();
    let results = store
        .apply_batch(vec![
            GuildWrite::PutMessage(a.clone()),
            GuildWrite::EditMessage(a2.clone()),
            GuildWrite::DeleteMessage { channel_id: channel.id, message_id: b.id },
            GuildWrite::PutMessage(b.clone()),
        ])
        .await;
    assert_eq!(results, vec![Ok(()), Ok(()), Err(StoreError::NotFound), Ok(())]);
    assert_eq!(store.message(channel.id, a.id).await.unwrap(), Some(a2));
    assert_eq!(store.message(channel.id, b.id).await.unwrap(), Some(b));
    store.flush().await.unwrap();
}

pub async fn reactions(store: &dyn Storage) {
    let channel = text_channel(fresh_id(), fresh_id(), "reactions");
    let author = user("author");
    let m = message(&channel, fresh_id(), &author, "poll");
    store.apply(GuildWrite::PutMessage(m.clone())).await.unwrap();
    let (a, b, c) = (fresh_id(), fresh_id(), fresh_id());
    let react = |user, name: &str, add: bool| {
        let (channel_id, message_id, emoji, user_id) = (channel.id, m.id, Emoji::parse(name).unwrap(), user);
        if add {
            GuildWrite::AddReaction { channel_id, message_id, emoji, user_id }
        } else {
            GuildWrite::RemoveReaction { channel_id, message_id, emoji, user_id }
        }
    };
    for (user, name) in [(c, "👍"), (a, "👍"), (b, "👍"), (a, "🎉"), (a, "👍")] {
        store.apply(react(user, name, true)).await.unwrap(); // the second (a, 👍) changes nothing
    }
    store.apply(react(b, "🎉", false)).await.unwrap(); // removing what is not there is fine
    let counts = store.reactions(channel.id, m.id, a).await.unwrap();
    let summary: Vec<(String, u32, bool)> = counts.iter().map(|r| (r.emoji.name.clone(), r.count, r.me)).collect();
    let mut expected = vec![("👍".to_owned(), 3, true), ("🎉".to_owned(), 1, true)];
    expected.sort();
    assert_eq!(summary, expected, "per emoji, in emoji order");
    assert!(store.reactions(channel.id, m.id, fresh_id()).await.unwrap().iter().all(|r| !r.me));
    assert_eq!(store.reaction_users(channel.id, m.id, "👍", None, 10).await.unwrap(), vec![a, b, c], "by user id");
    assert_eq!(store.reaction_users(channel.id, m.id, "👍", Some(a), 1).await.unwrap(), vec![b], "after, limit");
    assert!(store.reaction_users(channel.id, m.id, "👍", None, 0).await.unwrap().is_empty());
    store.apply(react(a, "👍", false)).await.unwrap();
    assert_eq!(store.reaction_users(channel.id, m.id, "👍", None, 10).await.unwrap(), vec![b, c]);

    // A deleted message takes its reactions with it.
    store.apply(GuildWrite::DeleteMessage { channel_id: channel.id, message_id: m.id }).await.unwrap();
    assert!(store.reactions(channel.id, m.id, a).await.unwrap().is_empty());
}

pub async fn plugins(store: &dyn Storage) {
    let guild = fresh_id();
    let bytes = format!("component {}", fresh_id()).into_bytes();
    let hash = format!("{:064x}", fresh_id().0);
    assert_eq!(store.component(&hash).await.unwrap(), None);
    store.put_component(&hash, bytes.clone(), 1_000).await.unwrap();
    store.put_component(&hash, bytes.clone(), 1_000).await.unwrap(); // idempotent
    assert_eq!(store.component(&hash).await.unwrap(), Some(bytes));

    let record = |name: &str| PluginRecord {
        id: fresh_id(),
        guild_id: guild,
        name: name.into(),
        kind: PluginKind::Moderator,
        enabled: true,
        config: serde_json::json!({ "banned_words": ["x"] }),
        component_sha256: hash.clone(),
        created_at: "2026-01-01T00:00:00.000000+00:00".into(),
    };
    let (a, b) = (record("first"), record("second"));
    store.put_plugin(a.clone()).await.unwrap();
    store.put_plugin(b.clone()).await.unwrap();
    assert_eq!(store.guild_plugins(guild).await.unwrap(), vec![a.clone(), b.clone()], "in installation order");
    let mut disabled = a.clone();
    disabled.enabled = false;
    store.put_plugin(disabled.clone()).await.unwrap();
    assert_eq!(store.guild_plugins(guild).await.unwrap(), vec![disabled, b.clone()]);
    store.delete_plugin(guild, a.id).await.unwrap();
    assert_eq!(store.delete_plugin(guild, a.id).await, Err(StoreError::NotFound));
    assert_eq!(store.guild_plugins(guild).await.unwrap(), vec![b.clone()]);
    assert!(store.guild_plugins(fresh_id()).await.unwrap().is_empty(), "other guilds see nothing");

    // Collection: a component no plugin uses, last stored before the cutoff, goes; one in
    // use, or stored again since the cutoff, stays.
    let unused = format!("{:064x}", fresh_id().0);
    let stored_again = format!("{:064x}", fresh_id().0);
    store.put_component(&unused, b"unused".to_vec(), 1_000).await.unwrap();
    store.put_component(&stored_again, b"again".to_vec(), 1_000).await.unwrap();
    let collected = store.collect_components(1_000).await.unwrap();
    assert!(!collected.contains(&unused), "nothing was stored before the cutoff");
    store.put_component(&stored_again, b"again".to_vec(), 3_000).await.unwrap();
    let collected = store.collect_components(2_000).await.unwrap();
    assert!(collected.contains(&unused), "{collected:?}");
    assert!(!collected.contains(&stored_again) && !collected.contains(&hash), "{collected:?}");
    assert_eq!(store.component(&unused).await.unwrap(), None);
    assert!(store.component(&stored_again).await.unwrap().is_some());
    assert!(store.component(&hash).await.unwrap().is_some(), "in use by the second plugin");
    // Once its last plugin is gone, the component goes too.
    store.delete_plugin(guild, b.id).await.unwrap();
    let collected = store.collect_components(4_000).await.unwrap();
    assert!(collected.contains(&hash) && collected.contains(&stored_again), "{collected:?}");
    assert_eq!(store.component(&hash).await.unwrap(), None);
}

pub async fn plugin_kv(store: &dyn Storage) {
    let (plugin, guild, other_guild) = (fresh_id(), fresh_id(), fresh_id());
    assert_eq!(store.kv_get(plugin, guild, "a").await.unwrap(), None);
    store.kv_put(plugin, guild, "a", b"1".to_vec()).await.unwrap();
    store.kv_put(plugin, guild, "ab", b"22".to_vec()).await.unwrap();
    store.kv_put(plugin, guild, "b", b"333".to_vec()).await.unwrap();
    store.kv_put(plugin, other_guild, "a", b"elsewhere".to_vec()).await.unwrap();
    store.kv_put(plugin, guild, "a", b"one".to_vec()).await.unwrap(); // overwrite
    assert_eq!(store.kv_get(plugin, guild, "a").await.unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.kv_get(plugin, other_guild, "a").await.unwrap(), Some(b"elsewhere".to_vec()), "per guild");
    let keys = store.kv_keys(plugin, guild, "a", 100).await.unwrap();
    assert_eq!(keys, vec![("a".to_owned(), 3), ("ab".to_owned(), 2)]);
    assert_eq!(store.kv_keys(plugin, guild, "", 100).await.unwrap().len(), 3);
    assert_eq!(store.kv_keys(plugin, guild, "", 2).await.unwrap().len(), 2, "limit");
    store.kv_delete(plugin, guild, "a").await.unwrap();
    store.kv_delete(plugin, guild, "missing").await.unwrap();
    assert_eq!(store.kv_get(plugin, guild, "a").await.unwrap(), None);
    assert!(store.kv_keys(fresh_id(), guild, "", 10).await.unwrap().is_empty(), "per plugin");
}

pub async fn plugin_timers(store: &dyn Storage) {
    let (plugin, guild, other_guild) = (fresh_id(), fresh_id(), fresh_id());
    assert!(store.timers(plugin, guild).await.unwrap().is_empty());
    let due = now_ms();
    let timer = |id: u64, payload: &str| PluginTimer { id, due_unix_ms: due + id * 1000, payload: payload.into() };
    store.put_timer(plugin, guild, timer(2, "second")).await.unwrap();
    store.put_timer(plugin, guild, timer(1, "first")).await.unwrap();
    store.put_timer(plugin, guild, timer(3, "third")).await.unwrap();
    store.put_timer(plugin, other_guild, timer(1, "elsewhere")).await.unwrap();
    store.delete_timer(plugin, guild, 3).await.unwrap();
    store.delete_timer(plugin, guild, 99).await.unwrap(); // cancelling twice is fine
    let mut pending = store.timers(plugin, guild).await.unwrap();
    pending.sort_by_key(|t| t.id);
    assert_eq!(pending, vec![timer(1, "first"), timer(2, "second")]);
    assert_eq!(store.timers(plugin, other_guild).await.unwrap().len(), 1, "per guild");
    assert!(store.timers(fresh_id(), guild).await.unwrap().is_empty(), "per plugin");

    // Removing the plugin removes its timers and its key-value store, in that guild only.
    let record = PluginRecord {
        id: plugin,
        guild_id: guild,
        name: "timed".into(),
        kind: PluginKind::Bot,
        enabled: true,
        config: serde_json::json!({}),
        component_sha256: "0".repeat(64),
        created_at: "2026-01-01T00:00:00.000000+00:00".into(),
    };
    store.put_plugin(record).await.unwrap();
    store.kv_put(plugin, guild, "k", b"v".to_vec()).await.unwrap();
    store.kv_put(plugin, other_guild, "k", b"v".to_vec()).await.unwrap();
    store.delete_plugin(guild, plugin).await.unwrap();
    assert!(store.timers(plugin, guild).await.unwrap().is_empty(), "timers removed with the plugin");
    assert!(store.kv_keys(plugin, guild, "", 10).await.unwrap().is_empty(), "key-value store removed with the plugin");
    assert_eq!(store.timers(plugin, other_guild).await.unwrap().len(), 1);
    assert_eq!(store.kv_get(plugin, other_guild, "k").await.unwrap(), Some(b"v".to_vec()));
}

pub async fn audit_log(store: &dyn Storage) {
    let (guild, other_guild) = (fresh_id(), fresh_id());
    let entry = |guild, action_type, reason: &str| AuditLogEntry {
        id: fresh_id(),
        guild_id: guild,
        user_id: None,
        target_id: Some(fresh_id()),
        action_type,
        reason: Some(reason.into()),
        changes: vec![AuditLogChange {
            key: "enabled".into(),
            old_value: Some(serde_json::json!(true)),
            new_value: Some(serde_json::json!(false)),
        }],
        options: serde_json::Map::new(),
    };
    // Past the retention: written (as a late write could be) but never listed.
    let mut expired = entry(guild, audit_action::INTEGRATION_UPDATE, "too old");
    expired.id = id_at(now_ms() - (guildhall_core::model::AUDIT_LOG_RETENTION_DAYS + 1) * 24 * 3600 * 1000, 7);
    store.add_audit_entry(expired).await.unwrap();
    let written: Vec<AuditLogEntry> =
        (0..5).map(|i| entry(guild, audit_action::AUTO_MODERATION_BLOCK_MESSAGE, &format!("block {i}"))).collect();
    for e in &written {
        store.add_audit_entry(e.clone()).await.unwrap();
    }
    store.add_audit_entry(entry(other_guild, audit_action::GUILD_UPDATE, "elsewhere")).await.unwrap();

    let newest_first: Vec<AuditLogEntry> = written.iter().rev().cloned().collect();
    let at = now_ms();
    assert_eq!(store.audit_log(guild, None, 100, at).await.unwrap(), newest_first, "newest first, expired left out");
    assert_eq!(store.audit_log(guild, None, 2, at).await.unwrap(), newest_first[..2].to_vec(), "limit");
    let before = store.audit_log(guild, Some(written[2].id), 100, at).await.unwrap();
    assert_eq!(before, vec![written[1].clone(), written[0].clone()], "before is exclusive");
    assert!(store.audit_log(guild, None, 0, at).await.unwrap().is_empty());
    assert_eq!(store.audit_log(other_guild, None, 100, at).await.unwrap().len(), 1, "per guild");
    // Retention is reckoned at the time asked about: past it, nothing of this is kept.
    let retention_ms = guildhall_core::model::AUDIT_LOG_RETENTION_DAYS * 24 * 3600 * 1000;
    let later = written[4].id.unix_ms() + retention_ms + 1;
    assert!(store.audit_log(guild, None, 100, later).await.unwrap().is_empty());
}

pub async fn roles_overwrites_and_bans(store: &dyn Storage) {
    use guildhall_core::model::{Ban, Role};
    use guildhall_core::permissions::{Overwrite, OverwriteKind, Permissions};
    let owner = user("owner");
    let gid = fresh_id();
    let mut guild = Guild::new(gid, "g", owner.id);
    let role = Role::new(fresh_id(), "mods", 1, Permissions::MANAGE_MESSAGES);
    guild.roles.push(role.clone());
    let mut general = text_channel(fresh_id(), gid, "general");
    store.create_guild(guild.clone(), member(&owner), vec![general.clone()]).await.unwrap();
    assert_eq!(store.guild(gid).await.unwrap().unwrap().roles, guild.roles, "roles live with the guild");

    general.permission_overwrites.push(Overwrite {
        id: gid,
        kind: OverwriteKind::Role,
        allow: Permissions::NONE,
        deny: Permissions::SEND_MESSAGES,
    });
    store.apply(GuildWrite::UpdateChannel(general.clone())).await.unwrap();
    assert_eq!(store.channel(general.id).await.unwrap(), Some(general.clone()));
    assert_eq!(store.guild_channels(gid).await.unwrap(), vec![general]);

    let users: Vec<User> = (0..3).map(|i| user(&format!("b{i}"))).collect();
    for u in &users {
        store.apply(GuildWrite::AddMember { guild_id: gid, member: member(u), invite: None }).await.unwrap();
    }
    let mut promoted = member(&users[0]);
    promoted.roles = vec![role.id];
    promoted.nick = Some("boss".into());
    store.apply(GuildWrite::UpdateMember { guild_id: gid, member: promoted.clone() }).await.unwrap();
    assert_eq!(store.member(gid, users[0].id).await.unwrap(), Some(promoted));

    // A ban removes the membership with it; a non-member can be banned too.
    store.apply(GuildWrite::RemoveMember { guild_id: gid, user_id: users[2].id }).await.unwrap();
    for (u, reason) in [(&users[1], Some("spam".to_owned())), (&users[2], None)] {
        let ban = Ban { user: u.clone(), reason };
        store.apply(GuildWrite::Ban { guild_id: gid, ban }).await.unwrap();
    }
    assert!(store.member(gid, users[1].id).await.unwrap().is_none());
    assert!(store.user_guilds(users[1].id).await.unwrap().is_empty());
    let mut banned: Vec<Snowflake> = vec![users[1].id, users[2].id];
    banned.sort();
    let page1 = store.bans(gid, None, 1).await.unwrap();
    let page2 = store.bans(gid, Some(page1[0].user.id), 10).await.unwrap();
    let got: Vec<Snowflake> = page1.iter().chain(&page2).map(|b| b.user.id).collect();
    assert_eq!(got, banned, "in user id order, paged by after");
    let spam = page1.iter().chain(&page2).find(|b| b.user.id == users[1].id).unwrap();
    assert_eq!(spam.reason.as_deref(), Some("spam"));
    store.apply(GuildWrite::Unban { guild_id: gid, user_id: users[1].id }).await.unwrap();
    assert_eq!(store.bans(gid, None, 10).await.unwrap().len(), 1);
    assert!(store.bans(fresh_id(), None, 10).await.unwrap().is_empty());
}

/// A node id lease is taken, then renewed by its holder. (That another holder is refused
/// matters only for a store hosts share, Scylla's: the e2e tests start two hosts on one.)
pub async fn node_leases(store: &dyn Storage) {
    let node = (fresh_id().0 % 1024) as u16;
    assert!(store.lease_node_id(node, "host-a", 10_000).await.unwrap());
    assert!(store.lease_node_id(node, "host-a", 10_000).await.unwrap(), "the holder renews");
}

/// Generates one `#[tokio::test]` per conformance check. `$make` is an async expression
/// yielding `Option<S>` for some `S: Storage`; `None` means the backend decided not to run
/// (it must only do so where a missing service is allowed to skip, never in CI).
fn log_entry(key: LogKey, seq: u64, prev: u64, event: StreamEvent) -> LogEntry {
    LogEntry { v: LOG_SCHEMA_VERSION, key, seq, prev, recipients: Vec::new(), event }
}

/// The outbox of message events: entries stored with their batch whatever becomes of their
/// own writes, read back in order, deleted once relayed, the head kept, pending logs listed.
pub async fn event_log(store: &dyn Storage) {
    let owner = user("logowner");
    let gid = fresh_id();
    let channel = text_channel(fresh_id(), gid, "general");
    store.create_guild(Guild::new(gid, "logged", owner.id), member(&owner), vec![channel.clone()]).await.unwrap();
    let key = LogKey::Guild(gid);
    assert_eq!(store.log_head(key).await.unwrap(), 0, "a log never written has head 0");
    assert!(store.log_entries(key, 0, 10).await.unwrap().is_empty());

    let (m1, m2, gone) = (
        message(&channel, fresh_id(), &owner, "one"),
        message(&channel, fresh_id(), &owner, "two"),
        message(&channel, fresh_id(), &owner, "never stored"),
    );
    let writes = vec![
        GuildWrite::PutMessage(m1.clone()),
        GuildWrite::EditMessage(gone.clone()),
        GuildWrite::PutMessage(m2.clone()),
    ];
    let entries = vec![
        log_entry(key, 1, 0, StreamEvent::MessageCreate { message: m1.clone() }),
        log_entry(key, 2, 1, StreamEvent::MessageUpdate { message: gone.clone() }),
        log_entry(key, 3, 2, StreamEvent::MessageCreate { message: m2.clone() }),
    ];
    let done = store.apply_logged_batch(writes, entries.clone()).await;
    assert_eq!(done.log, Ok(()));
    assert_eq!(done.writes, vec![Ok(()), Err(StoreError::NotFound), Ok(())]);
    assert_eq!(store.message(channel.id, m2.id).await.unwrap().map(|m| m.content), Some("two".into()));
    assert_eq!(store.log_head(key).await.unwrap(), 3);
    assert_eq!(store.log_entries(key, 0, 10).await.unwrap(), entries, "entries of refused writes too");
    assert_eq!(store.log_entries(key, 1, 1).await.unwrap(), entries[1..2].to_vec(), "after, at most limit");
    assert!(store.logs_pending(100_000).await.unwrap().contains(&key));

    // A batch without entries leaves the log alone.
    let plain = store
        .apply_logged_batch(vec![GuildWrite::PutMessage(message(&channel, fresh_id(), &owner, "x"))], vec![])
        .await;
    assert_eq!((plain.log, plain.writes), (Ok(()), vec![Ok(())]));
    assert_eq!(store.log_head(key).await.unwrap(), 3);

    store.log_relayed(key, 2, now_ms()).await.unwrap();
    assert_eq!(store.log_entries(key, 0, 10).await.unwrap(), entries[2..].to_vec());
    assert!(store.logs_pending(100_000).await.unwrap().contains(&key), "an entry is left");
    // (A CQL store keeps a mark written in the second before the call: relayed "later".)
    store.log_relayed(key, 3, now_ms() + 1_500).await.unwrap();
    assert!(store.log_entries(key, 0, 10).await.unwrap().is_empty());
    assert!(!store.logs_pending(100_000).await.unwrap().contains(&key), "nothing left");
    assert_eq!(store.log_head(key).await.unwrap(), 3, "the head outlives the entries");

    // Numbering goes on; a DM's log carries its recipients.
    let next = log_entry(key, 4, 3, StreamEvent::MessageDelete { channel_id: channel.id, id: m1.id });
    let done = store
        .apply_logged_batch(
            vec![GuildWrite::DeleteMessage { channel_id: channel.id, message_id: m1.id }],
            vec![next.clone()],
        )
        .await;
    assert_eq!(done.writes, vec![Ok(())]);
    assert_eq!(store.log_head(key).await.unwrap(), 4);
    store.log_relayed(key, 4, now_ms() + 1_500).await.unwrap();

    let dm = LogKey::Dm(fresh_id());
    let mut entry = log_entry(dm, 1, 0, StreamEvent::Void);
    entry.recipients = vec![owner.id, Snowflake(42)];
    assert_eq!(store.apply_logged_batch(vec![], vec![entry.clone()]).await.log, Ok(()));
    assert_eq!(store.log_entries(dm, 0, 10).await.unwrap(), vec![entry]);
    assert!(store.logs_pending(100_000).await.unwrap().contains(&dm));
    store.log_relayed(dm, 1, now_ms() + 1_500).await.unwrap();
    assert!(!store.logs_pending(100_000).await.unwrap().contains(&dm));
}

#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            users_and_tokens, guilds_channels_members, invites, joins_by_invite, node_leases, dm_channels,
            history_across_buckets, edit_and_delete, reactions, plugins, plugin_kv, plugin_timers, audit_log,
            roles_overwrites_and_bans, event_log);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(store) = $make else { return };
                $crate::conformance::$name(&store).await;
            }
        )*
    };
}
