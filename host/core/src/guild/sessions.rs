//! The sessions online in a guild: connecting (GUILD_CREATE), leaving, moving to another
//! node, presence (a user shows the most present of their sessions' statuses), and who
//! hears a dispatch ([`Audience`]s resolved to sessions, intents and channel visibility
//! applied).

use crate::event::{GuildEvent, GuildSnapshot, Presence};
use crate::gateway::{intents, Intents, Status};
use crate::model::{Message, UserId};
use crate::permissions::Permissions;

use super::data::{GuildData, OnlineSession};
use super::protocol::{Audience, Effect, SessionId};

/// Above this many members a guild is "large": GUILD_CREATE carries no member list.
pub const LARGE_THRESHOLD: usize = 250;

impl GuildData {
    /// A member's session came online: it gets GUILD_CREATE, and the others hear of the
    /// user if they were not visible before. A non-member's session is ignored.
    pub(super) fn connect(
        &mut self,
        session: SessionId,
        user: UserId,
        intents: Intents,
        status: Status,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        if !self.members.contains_key(&user) {
            return fx;
        }
        let was_visible = self.visible_status(user).is_some();
        if self.sessions.insert(session, OnlineSession { user, intents, status }).is_none() {
            self.user_sessions.entry(user).or_default().push(session);
        }
        fx.push(Effect::dispatch(Audience::One(session), self.guild_create(user)));
        if !was_visible && self.visible_status(user).is_some() {
            fx.push(self.presence_effect(user));
        }
        fx
    }

    pub(super) fn disconnect(&mut self, session: SessionId) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(s) = self.remove_session(session) {
            if s.status.visible_rank().is_some() && self.visible_status(s.user).is_none() {
                fx.push(self.presence_effect(s.user));
            }
        }
        fx
    }

    /// The same session under a new id (taken over by another node): nothing changes for
    /// anyone else.
    pub(super) fn move_session(&mut self, from: SessionId, to: SessionId) {
        if let Some(online) = self.remove_session(from) {
            let user = online.user;
            if self.sessions.insert(to, online).is_none() {
                self.user_sessions.entry(user).or_default().push(to);
            }
        }
    }

    /// A session set its status (op 3): the others hear of it if what they see changed.
    pub(super) fn set_status(&mut self, session: SessionId, status: Status) -> Vec<Effect> {
        let Some(user) = self.sessions.get(&session).map(|s| s.user) else { return Vec::new() };
        let before = self.visible_status(user);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.status = status;
        }
        if self.visible_status(user) == before {
            return Vec::new();
        }
        vec![self.presence_effect(user)]
    }

    /// Whether a session reads a message's content: a bot's session needs the MESSAGE_CONTENT
    /// intent unless the bot wrote the message or is mentioned in it (Discord's rule).
    pub fn reads_content(&self, session: SessionId, message: &Message) -> bool {
        let Some(s) = self.sessions.get(&session) else { return false };
        self.reads_all_content(session) || message.shown_to_bots_without_content(s.user)
    }

    pub fn reads_all_content(&self, session: SessionId) -> bool {
        let Some(s) = self.sessions.get(&session) else { return false };
        let is_bot = self.members.get(&s.user).is_some_and(|m| m.user.bot);
        !is_bot || s.intents.contains(intents::MESSAGE_CONTENT)
    }

    /// Whether a member who is not a gateway session (a plugin bot) hears a dispatch for
    /// `audience`: a channel's events only if they may view it.
    pub fn hears(&self, user: UserId, audience: &Audience) -> bool {
        match audience {
            Audience::Channel { channel_id, .. } => {
                self.channel_permissions(user, *channel_id).contains(Permissions::VIEW_CHANNEL)
            }
            _ => true,
        }
    }

    /// The sessions an audience resolves to, in session order.
    pub fn audience(&self, audience: &Audience) -> Vec<SessionId> {
        let with = |intent: Intents| move |(_, s): &(&SessionId, &OnlineSession)| s.intents.contains(intent);
        match audience {
            Audience::Guild { intent } => self.sessions.iter().filter(with(*intent)).map(|(id, _)| *id).collect(),
            Audience::Channel { channel_id, intent } => {
                // Only sessions that can view the channel; permissions are cached per role
                // set, so this is a lookup per session, not a computation.
                if !self.channels.contains_key(channel_id) {
                    return Vec::new();
                }
                debug_assert!(self.sessions.values().all(|s| self.members.contains_key(&s.user)));
                self.sessions
                    .iter()
                    .filter(with(*intent))
                    .filter(|(_, s)| self.channel_permissions(s.user, *channel_id).contains(Permissions::VIEW_CHANNEL))
                    .map(|(id, _)| *id)
                    .collect()
            }
            Audience::GuildExceptUser { user, intent } => {
                self.sessions.iter().filter(with(*intent)).filter(|(_, s)| s.user != *user).map(|(id, _)| *id).collect()
            }
            Audience::One(id) => self.sessions.contains_key(id).then_some(*id).into_iter().collect(),
            Audience::User(user) => self.user_sessions.get(user).cloned().unwrap_or_default(),
        }
    }

    /// Takes a member out (left, kicked or banned): their sessions get GUILD_DELETE and
    /// stop hearing from the guild, and the others hear GUILD_MEMBER_REMOVE.
    pub(super) fn remove_member(&mut self, user_id: UserId, fx: &mut Vec<Effect>) {
        let Some(member) = self.members.remove(&user_id) else { return };
        let gone: Vec<SessionId> = self.user_sessions.get(&user_id).cloned().unwrap_or_default();
        for session in gone {
            fx.push(Effect::dispatch(Audience::One(session), GuildEvent::GuildDelete { id: self.guild.id }));
            fx.push(Effect::ForgetSession(session));
            self.remove_session(session);
        }
        let event = GuildEvent::MemberRemove { guild_id: self.guild.id, user: member.user };
        fx.push(Effect::dispatch(Audience::Guild { intent: intents::GUILD_MEMBERS }, event));
    }

    /// The status others see: the most present of the user's sessions; None if offline
    /// or invisible.
    fn visible_status(&self, user: UserId) -> Option<Status> {
        self.user_sessions
            .get(&user)?
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .filter(|s| s.status.visible_rank().is_some())
            .min_by_key(|s| s.status.visible_rank())
            .map(|s| s.status)
    }

    fn remove_session(&mut self, session: SessionId) -> Option<OnlineSession> {
        let removed = self.sessions.remove(&session)?;
        if let Some(list) = self.user_sessions.get_mut(&removed.user) {
            list.retain(|s| *s != session);
            if list.is_empty() {
                self.user_sessions.remove(&removed.user);
            }
        }
        Some(removed)
    }

    fn presence(&self, user: UserId) -> Presence {
        let status = self.visible_status(user).unwrap_or(Status::Offline);
        Presence { user_id: user, guild_id: self.guild.id, status }
    }

    /// PRESENCE_UPDATE about `user` to everyone else who has the intent.
    fn presence_effect(&self, user: UserId) -> Effect {
        Effect::dispatch(
            Audience::GuildExceptUser { user, intent: intents::GUILD_PRESENCES },
            GuildEvent::PresenceUpdate(self.presence(user)),
        )
    }

    /// GUILD_CREATE for a session of `user` that just connected: channels, member count,
    /// and the online members with their presences. A large guild (over
    /// [`LARGE_THRESHOLD`] members) sends only the user's own member, as Discord does:
    /// the rest is requested on demand, so connecting costs the same in any guild.
    pub fn guild_create(&self, user: UserId) -> GuildEvent {
        let large = self.members.len() > LARGE_THRESHOLD;
        let mut online: Vec<UserId> = if large {
            vec![user]
        } else {
            self.user_sessions.keys().copied().filter(|u| self.visible_status(*u).is_some()).collect()
        };
        online.sort();
        let members = online.iter().filter_map(|u| self.members.get(u)).cloned().collect();
        let presences = if large { Vec::new() } else { online.iter().map(|u| self.presence(*u)).collect() };
        GuildEvent::GuildCreate(Box::new(GuildSnapshot {
            guild: self.guild.clone(),
            joined_at: self.members.get(&user).map(|m| m.joined_at.clone()),
            member_count: self.members.len(),
            large,
            channels: self.channels.values().cloned().collect(),
            members,
            presences,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::plain::*;
    use super::super::testing::*;
    use super::super::*;
    use crate::gateway::Status;
    use crate::model::{Guild, Member};

    use crate::Snowflake;
    use serde_json::json;

    #[test]
    fn connect_sends_guild_create_and_presence_to_others() {
        let mut g = guild();
        let fx = connect(&mut g, 1, OWNER, ALL);
        let d = dispatches(&fx);
        assert_eq!(d[0].0, &Audience::One(SessionId(1)));
        assert_eq!(d[0].1.name, "GUILD_CREATE");
        assert_eq!(d[0].1.data["member_count"], 2);
        assert_eq!(d[0].1.data["channels"][0]["name"], "general");
        assert_eq!(d[1].1.name, "PRESENCE_UPDATE");
        assert_eq!(d[1].1.data["status"], "online");
        assert!(g.audience(d[1].0).is_empty(), "nobody else is online yet");

        let fx = connect(&mut g, 2, BOB, ALL);
        let d = dispatches(&fx);
        assert_eq!(d[0].1.data["presences"].as_array().unwrap().len(), 2);
        assert_eq!(g.audience(d[1].0), vec![SessionId(1)], "the owner hears bob come online");

        // A second session of the same user does not announce again.
        let fx = connect(&mut g, 3, BOB, ALL);
        assert_eq!(dispatches(&fx).len(), 1);
        // Closing one of two sessions: still online, no presence change.
        assert!(dispatches(&g.handle(Input::SessionDisconnect { session: SessionId(3) })).is_empty());
        let fx = g.handle(Input::SessionDisconnect { session: SessionId(2) });
        assert_eq!(dispatches(&fx)[0].1.data["status"], "offline");
    }

    #[test]
    fn a_moved_session_keeps_its_place_without_announcements() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        connect(&mut g, 2, BOB, ALL);
        g.handle(Input::PresenceUpdate { session: SessionId(2), status: Status::Dnd });
        let fx = g.handle(Input::SessionMoved { from: SessionId(2), to: SessionId(7) });
        assert!(fx.is_empty(), "no GUILD_CREATE, no presence: nothing changed for anyone");
        assert!(!g.has_session(SessionId(2)) && g.has_session(SessionId(7)));
        assert_eq!(g.session_status(SessionId(7)), Some(Status::Dnd));
        assert!(g.handle(Input::SessionMoved { from: SessionId(9), to: SessionId(8) }).is_empty());
        assert!(!g.has_session(SessionId(8)), "an unknown session does not appear");
        // The moved session is bob's only one: leaving announces him offline.
        let fx = g.handle(Input::SessionDisconnect { session: SessionId(7) });
        assert_eq!(dispatches(&fx)[0].1.data["status"], "offline");
    }

    #[test]
    fn invisible_and_presence_updates() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        let fx = g.handle(Input::SessionConnect {
            session: SessionId(2),
            user: BOB,
            intents: ALL,
            status: Status::Invisible,
        });
        assert_eq!(dispatches(&fx).len(), 1, "GUILD_CREATE only: invisible announces nothing");
        let fx = g.handle(Input::PresenceUpdate { session: SessionId(2), status: Status::Dnd });
        assert_eq!(dispatches(&fx)[0].1.data["status"], "dnd");
        let fx = g.handle(Input::PresenceUpdate { session: SessionId(2), status: Status::Dnd });
        assert!(fx.is_empty(), "no change, no dispatch");
    }

    #[test]
    fn large_guilds_send_no_member_list_on_connect() {
        let members: Vec<Member> = (1..=LARGE_THRESHOLD as u64 + 1).map(|i| member(Snowflake(i), "m")).collect();
        let mut g = GuildState::new(Guild::new(Snowflake(10), "big", OWNER), vec![text_channel(GENERAL)], members);
        connect(&mut g, 1, OWNER, ALL);
        let fx = connect(&mut g, 2, BOB, ALL);
        let gc = &dispatches(&fx)[0].1.data;
        assert_eq!(gc["large"], true);
        assert_eq!(gc["member_count"], LARGE_THRESHOLD + 1);
        assert_eq!(gc["members"].as_array().unwrap().len(), 1, "only the connecting user");
        assert_eq!(gc["members"][0]["user"]["id"], "2");
        assert_eq!(gc["presences"], json!([]));
    }

    mod bots_without_message_staffed {
        use super::super::super::testing::staffed::*;

        use super::super::super::*;
        use crate::gateway::{intents, Status};

        use crate::Snowflake;

        #[test]
        fn bots_without_message_content_read_only_their_own_messages_and_mentions() {
            use crate::event::GuildEvent;
            use crate::model::Message;
            let mut g = guild();
            let without = intents::ALL_KNOWN.without(intents::MESSAGE_CONTENT);
            for (session, user, intents) in [(1, BOT, without), (2, BOT, intents::ALL_KNOWN), (3, BOB, without)] {
                let status = Status::Online;
                g.handle(Input::SessionConnect { session: SessionId(session), user, intents, status });
            }
            let general = g.data.channels[&GENERAL].clone();
            let bobs = Message::new(Snowflake(900), &general, g.data.members[&BOB].user.clone(), "hello".into(), None);
            assert!(!g.reads_content(SessionId(1), &bobs), "a bot without the intent");
            assert!(g.reads_content(SessionId(2), &bobs), "a bot with it");
            assert!(g.reads_content(SessionId(3), &bobs), "people read everything");
            let mut mention = bobs.clone();
            mention.mentions = vec![g.data.members[&BOT].user.clone()];
            assert!(g.reads_content(SessionId(1), &mention), "a bot reads what mentions it");
            let own = Message::new(Snowflake(901), &general, g.data.members[&BOT].user.clone(), "mine".into(), None);
            assert!(g.reads_content(SessionId(1), &own), "and its own messages");
            let blind = GuildEvent::MessageCreate { message: bobs, member: None }.without_content();
            assert_eq!(
                (blind.discord_data()["content"].as_str(), blind.discord_data()["id"].as_str()),
                (Some(""), Some("900"))
            );
        }
    }
}
