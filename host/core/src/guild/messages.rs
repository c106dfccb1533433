//! Messages: creating one (with Discord's `enforce_nonce`), editing, deleting, reacting,
//! and typing. A new or edited message goes to the moderators before it is stored
//! ([`GuildData::moderated`] takes their verdict); the pipeline sends it there only if
//! moderation is on.

use serde_json::Value;

use crate::event::GuildEvent;
use crate::gateway::intents;
use crate::model::{mentioned_user_ids, validate_content, ChannelId, Emoji, Message, MessageId, User, UserId};
use crate::nonces::{Made, NonceKey};
use crate::permissions::Permissions;

use super::data::GuildData;
use super::protocol::WriteError;
use super::protocol::{Audience, Decision, Draft, Effect, GuildError, GuildWrite, ModerationVerdict, Object, Reply};

/// Plain data (serde), as every command: it can be sent to a guild on another node. The
/// names on the wire are the ones commands had before they had families.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum MessageCommand {
    /// `id` is the new message's id; the runtime takes it at the moment the guild handles
    /// the command, so that id order and fan-out order agree.
    #[serde(rename = "CreateMessage")]
    Create {
        author: UserId,
        channel_id: ChannelId,
        id: MessageId,
        content: String,
        nonce: Option<Value>,
        /// Discord's `enforce_nonce`: if this author's `nonce` made a message in the
        /// channel in the last few minutes, answer with it ([`Reply::Existing`]).
        enforce_nonce: bool,
    },
    /// `existing` is the stored message the runtime loaded.
    #[serde(rename = "EditMessage")]
    Edit {
        user: UserId,
        existing: Box<Message>,
        content: String,
        edited_timestamp: String,
    },
    #[serde(rename = "DeleteMessage")]
    Delete {
        user: UserId,
        existing: Box<Message>,
    },
    /// `existing` is the stored message the runtime loaded (reactions need one).
    AddReaction {
        user: UserId,
        existing: Box<Message>,
        emoji: Emoji,
    },
    RemoveReaction {
        user: UserId,
        existing: Box<Message>,
        emoji: Emoji,
    },
    Typing {
        user: UserId,
        channel_id: ChannelId,
        unix_s: u64,
    },
}

impl MessageCommand {
    /// Creates with one nonce one at a time: a retry waits for the first to be stored
    /// (through moderation), then finds it.
    pub(super) fn object(&self) -> Option<Object> {
        match self {
            MessageCommand::Create { author, channel_id, nonce: Some(nonce), .. } => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                nonce_key(*author, *channel_id, nonce).hash(&mut h);
                Some(Object::Nonce(h.finish()))
            }
            _ => None,
        }
    }
}

fn nonce_key(author: UserId, channel_id: ChannelId, nonce: &Value) -> NonceKey {
    (author, channel_id, nonce.to_string())
}

/// A message write, applied once it is stored.
#[derive(Debug, Clone)]
pub(super) enum Stored {
    Created(Message),
    Edited(Message),
    Deleted { channel_id: ChannelId, message_id: MessageId },
    Reaction { added: bool, message: Box<Message>, emoji: Emoji, user_id: UserId },
}

impl GuildData {
    pub(super) fn decide_message(&self, command: MessageCommand) -> Result<Decision<Stored>, GuildError> {
        match command {
            MessageCommand::Create { author, channel_id, mut id, content, nonce, enforce_nonce } => {
                let channel = self.can_send(author, channel_id)?;
                if let Some(nonce) = &nonce {
                    match self.nonces.find(&nonce_key(author, channel_id, nonce), id).filter(|_| enforce_nonce) {
                        Some(Made::Stored(message_id)) => {
                            return Ok(Decision::Answer(Reply::Existing { channel_id, message_id }))
                        }
                        // Its first write failed or timed out and may have landed: this
                        // writes the same row again, so that it is stored once either way
                        // (and fanned out once, now, though younger ids went out before).
                        Some(Made::Unsure(earlier)) => id = earlier,
                        None => {}
                    }
                }
                let mut message = Message::new(id, channel, self.members[&author].user.clone(), content, nonce);
                message.mentions = self.resolve_mentions(&message.content);
                message.mention_everyone = (message.content.contains("@everyone") || message.content.contains("@here"))
                    && self.channel_permissions(author, channel_id).contains(Permissions::MENTION_EVERYONE);
                Ok(Decision::Moderate(Draft { message, is_edit: false }))
            }
            MessageCommand::Edit { user, existing, content, edited_timestamp } => {
                self.check_own_message(user, &existing)?;
                let mut message = *existing;
                message.mentions = self.resolve_mentions(&content);
                message.content = content;
                message.edited_timestamp = Some(edited_timestamp);
                message.nonce = None;
                Ok(Decision::Moderate(Draft { message, is_edit: true }))
            }
            MessageCommand::Delete { user, existing } => {
                // The author, or whoever manages the channel's messages.
                match self.check_own_message(user, &existing) {
                    Err(GuildError::NotAuthor) => {
                        self.require_in(user, existing.channel_id, Permissions::MANAGE_MESSAGES)?
                    }
                    other => other?,
                }
                let (channel_id, message_id) = (existing.channel_id, existing.id);
                Ok(Decision::Write {
                    write: GuildWrite::DeleteMessage { channel_id, message_id },
                    stored: Stored::Deleted { channel_id, message_id },
                })
            }
            MessageCommand::AddReaction { user, existing, emoji } => self.react(user, *existing, emoji, true),
            MessageCommand::RemoveReaction { user, existing, emoji } => self.react(user, *existing, emoji, false),
            MessageCommand::Typing { user, channel_id, unix_s } => {
                self.can_send(user, channel_id)?;
                let event = GuildEvent::TypingStart {
                    channel_id,
                    guild_id: Some(self.guild.id),
                    user_id: user,
                    unix_s,
                    member: Some(self.members[&user].clone()),
                };
                let audience = Audience::Channel { channel_id, intent: intents::GUILD_MESSAGE_TYPING };
                Ok(Decision::Announce { audience, event, reply: Reply::Done })
            }
        }
    }

    /// The moderators' verdict on a new or edited message (`Allow` when moderation is off):
    /// the write, or the refusal its author hears.
    pub(super) fn moderated(&self, draft: Draft, verdict: ModerationVerdict) -> Result<Decision<Stored>, GuildError> {
        let Draft { mut message, is_edit } = draft;
        match verdict {
            ModerationVerdict::Allow => {}
            ModerationVerdict::Block(reason) => return Err(GuildError::Blocked(reason)),
            ModerationVerdict::Rewrite(content) => {
                if validate_content(&content).is_err() {
                    return Err(GuildError::Blocked("moderation left nothing that can be sent".to_owned()));
                }
                message.mentions = self.resolve_mentions(&content);
                message.content = content;
            }
        }
        Ok(if is_edit {
            Decision::Write { write: GuildWrite::EditMessage(message.clone()), stored: Stored::Edited(message) }
        } else {
            Decision::Write { write: GuildWrite::PutMessage(message.clone()), stored: Stored::Created(message) }
        })
    }

    /// A stored message write takes effect: the channel's viewers hear of it.
    pub(super) fn apply_message(&mut self, stored: Stored, fx: &mut Vec<Effect>) -> Reply {
        let guild_id = self.guild.id;
        let messages = |channel_id| Audience::Channel { channel_id, intent: intents::GUILD_MESSAGES };
        match stored {
            Stored::Created(m) => {
                if let Some(nonce) = &m.nonce {
                    self.nonces.record(nonce_key(m.author.id, m.channel_id, nonce), m.id);
                }
                let member = self.members.get(&m.author.id).cloned();
                fx.push(Effect::dispatch(
                    messages(m.channel_id),
                    GuildEvent::MessageCreate { message: m.clone(), member },
                ));
                Reply::Message(m)
            }
            Stored::Edited(m) => {
                let member = self.members.get(&m.author.id).cloned();
                fx.push(Effect::dispatch(
                    messages(m.channel_id),
                    GuildEvent::MessageUpdate { message: m.clone(), member },
                ));
                Reply::Message(m)
            }
            Stored::Deleted { channel_id, message_id } => {
                self.nonces.forget(message_id);
                let event = GuildEvent::MessageDelete { id: message_id, channel_id, guild_id: Some(guild_id) };
                fx.push(Effect::dispatch(messages(channel_id), event));
                Reply::Done
            }
            Stored::Reaction { added, message, emoji, user_id } => {
                let (channel_id, message_id) = (message.channel_id, message.id);
                let event = if added {
                    let member = self.members.get(&user_id).cloned();
                    let message_author_id = message.author.id;
                    GuildEvent::ReactionAdd {
                        user_id,
                        channel_id,
                        message_id,
                        guild_id,
                        emoji,
                        member,
                        message_author_id,
                    }
                } else {
                    GuildEvent::ReactionRemove { user_id, channel_id, message_id, guild_id, emoji }
                };
                let audience = Audience::Channel { channel_id, intent: intents::GUILD_MESSAGE_REACTIONS };
                fx.push(Effect::dispatch(audience, event));
                Reply::Done
            }
        }
    }

    /// A message write failed. A create that may have landed anyway (the store did not
    /// answer) keeps its nonce as unsure, so that its retry writes the same message again.
    pub(super) fn message_write_failed(&mut self, stored: &Stored, e: WriteError) -> GuildError {
        if let (Stored::Created(m), WriteError::Unavailable(_)) = (stored, &e) {
            if let Some(nonce) = &m.nonce {
                self.nonces.record_unsure(nonce_key(m.author.id, m.channel_id, nonce), m.id);
            }
        }
        GuildError::from_write(e, GuildError::UnknownMessage)
    }

    /// Reacting needs the channel's history (READ_MESSAGE_HISTORY) and, to add, ADD_REACTIONS.
    fn react(
        &self,
        user_id: UserId,
        message: Message,
        emoji: Emoji,
        added: bool,
    ) -> Result<Decision<Stored>, GuildError> {
        let need = if added {
            Permissions::READ_MESSAGE_HISTORY | Permissions::ADD_REACTIONS
        } else {
            Permissions::READ_MESSAGE_HISTORY
        };
        self.require_in(user_id, message.channel_id, need)?;
        let (channel_id, message_id, e) = (message.channel_id, message.id, emoji.clone());
        let write = if added {
            GuildWrite::AddReaction { channel_id, message_id, emoji: e, user_id }
        } else {
            GuildWrite::RemoveReaction { channel_id, message_id, emoji: e, user_id }
        };
        Ok(Decision::Write { write, stored: Stored::Reaction { added, message: Box::new(message), emoji, user_id } })
    }

    fn check_own_message(&self, user: UserId, existing: &Message) -> Result<(), GuildError> {
        self.in_channel(user, existing.channel_id)?;
        if existing.author.id != user {
            return Err(GuildError::NotAuthor);
        }
        Ok(())
    }

    fn resolve_mentions(&self, content: &str) -> Vec<User> {
        mentioned_user_ids(content).into_iter().filter_map(|id| self.members.get(&id).map(|m| m.user.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::plain::*;
    use super::super::testing::*;
    use super::super::*;
    use crate::gateway::intents;
    use crate::model::{Emoji, Message, User};
    use crate::nonces::RecentNonces;

    use crate::Snowflake;
    use serde_json::json;

    fn create_with_nonce(id: u64, nonce: &str, enforce_nonce: bool) -> MessageCommand {
        MessageCommand::Create {
            author: OWNER,
            channel_id: GENERAL,
            id: Snowflake(id << 22),
            content: format!("try at {id}"),
            nonce: Some(json!(nonce)),
            enforce_nonce,
        }
    }

    #[test]
    fn non_members_cannot_connect_send_or_read() {
        let mut g = guild();
        assert!(connect(&mut g, 1, CAROL, ALL).is_empty());
        assert_eq!(g.online_sessions(), 0);
        let fx = g.handle(cmd(
            1,
            MessageCommand::Create {
                author: CAROL,
                channel_id: GENERAL,
                id: Snowflake(500),
                content: "hi".into(),
                nonce: None,
                enforce_nonce: false,
            },
        ));
        assert_eq!(reply(&fx), &Err(GuildError::NotMember));
        assert_eq!(reply(&g.handle(cmd(2, GuildCommand::Snapshot { user: CAROL }))), &Err(GuildError::NotMember));
        let fx = g.handle(cmd(
            3,
            MessageCommand::Create {
                author: BOB,
                channel_id: Snowflake(999),
                id: Snowflake(501),
                content: "hi".into(),
                nonce: None,
                enforce_nonce: false,
            },
        ));
        assert_eq!(reply(&fx), &Err(GuildError::UnknownChannel));
    }

    #[test]
    fn message_is_persisted_before_fan_out_and_targets_sessions_with_the_intent() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        connect(&mut g, 2, BOB, intents::GUILDS); // no GUILD_MESSAGES
        connect(&mut g, 3, BOB, intents::GUILD_MESSAGES);
        let fx = g.handle(cmd(
            7,
            MessageCommand::Create {
                author: BOB,
                channel_id: GENERAL,
                id: Snowflake(500),
                content: "hello <@1>".into(),
                nonce: Some(json!("n1")),
                enforce_nonce: false,
            },
        ));
        assert_eq!(fx.len(), 1, "only a persist, nothing visible yet");
        let Effect::Persist { request: 7, write: GuildWrite::PutMessage(m) } = &fx[0] else { panic!("{fx:?}") };
        assert_eq!(m.mentions[0].id, OWNER);
        let epoch = g.audience_epoch();
        let fx = g.handle(Input::Persisted { request: 7, result: Ok(()) });
        assert_eq!(g.audience_epoch(), epoch, "a message changes no audience: resolved ones are reused");
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "MESSAGE_CREATE");
        assert_eq!(d[0].1.data["nonce"], "n1");
        assert_eq!(d[0].1.data["member"]["joined_at"], "2026-01-01T00:00:00.000000+00:00");
        assert_eq!(g.audience(d[0].0), vec![SessionId(1), SessionId(3)]);
        assert!(matches!(reply(&fx), Ok(Reply::Message(m)) if m.content == "hello <@1>"));
        // The sender is answered first: it never waits for the fan-out to the others.
        assert!(matches!(fx[0], Effect::Reply { request: 7, .. }), "{fx:?}");
        assert!(matches!(fx[1], Effect::Dispatch { .. }), "{fx:?}");
        connect(&mut g, 4, OWNER, ALL);
        assert_ne!(g.audience_epoch(), epoch, "a session that connects changes audiences");
    }

    #[test]
    fn failed_persist_replies_error_and_dispatches_nothing() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        g.handle(cmd(
            1,
            MessageCommand::Create {
                author: OWNER,
                channel_id: GENERAL,
                id: Snowflake(500),
                content: "x".into(),
                nonce: None,
                enforce_nonce: false,
            },
        ));
        let fx = g.handle(Input::Persisted { request: 1, result: Err(WriteError::Unavailable("down".into())) });
        assert!(dispatches(&fx).is_empty());
        assert!(matches!(reply(&fx), Err(GuildError::Storage(_))));
    }

    #[test]
    fn only_the_author_edits_and_the_author_or_a_message_manager_deletes() {
        let mut g = guild();
        let channel = text_channel(GENERAL);
        let owners = Message::new(Snowflake(499), &channel, User::new(OWNER, "owner", false), "o".into(), None);
        let fx = g.handle(cmd(9, MessageCommand::Delete { user: BOB, existing: Box::new(owners.clone()) }));
        assert_eq!(reply(&fx), &Err(GuildError::MissingPermissions), "bob has no MANAGE_MESSAGES");
        let msg = Message::new(Snowflake(500), &channel, User::new(BOB, "bob", false), "x".into(), None);
        let fx = g.handle(cmd(
            1,
            MessageCommand::Edit {
                user: OWNER,
                existing: Box::new(msg.clone()),
                content: "y".into(),
                edited_timestamp: "t".into(),
            },
        ));
        assert_eq!(reply(&fx), &Err(GuildError::NotAuthor));
        let fx = g.handle(cmd(2, MessageCommand::Delete { user: OWNER, existing: Box::new(owners) }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::DeleteMessage { .. }, .. }), "the owner manages");
        g.handle(Input::Persisted { request: 2, result: Ok(()) });
        let fx = g.handle(cmd(
            3,
            MessageCommand::Edit {
                user: BOB,
                existing: Box::new(msg.clone()),
                content: "y".into(),
                edited_timestamp: "t".into(),
            },
        ));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::EditMessage(m), .. } if m.content == "y"));
        let fx = g.handle(Input::Persisted { request: 3, result: Err(WriteError::NotFound) });
        assert_eq!(reply(&fx), &Err(GuildError::UnknownMessage), "deleted meanwhile");
        let fx = g.handle(cmd(4, MessageCommand::Delete { user: BOB, existing: Box::new(msg) }));
        let fx2 = g.handle(Input::Persisted { request: 4, result: Ok(()) });
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::DeleteMessage { .. }, .. }));
        assert_eq!(dispatches(&fx2)[0].1.name, "MESSAGE_DELETE");
    }

    #[test]
    fn reactions_persist_then_reach_sessions_with_the_reactions_intent() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        connect(&mut g, 2, BOB, intents::GUILDS | intents::GUILD_MESSAGES);
        let channel = text_channel(GENERAL);
        let msg = Message::new(Snowflake(500), &channel, User::new(OWNER, "owner", false), "poll".into(), None);
        let thumbs = Emoji::parse("👍").unwrap();
        let fx = g.handle(cmd(
            1,
            MessageCommand::AddReaction { user: BOB, existing: Box::new(msg.clone()), emoji: thumbs.clone() },
        ));
        let Effect::Persist { write: GuildWrite::AddReaction { message_id, user_id, emoji, .. }, .. } = &fx[0] else {
            panic!("{fx:?}")
        };
        assert_eq!((*message_id, *user_id, emoji), (Snowflake(500), BOB, &thumbs));
        assert!(dispatches(&fx).is_empty(), "nothing visible before it is stored");
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "MESSAGE_REACTION_ADD");
        assert_eq!(d[0].1.data["emoji"], json!({ "id": null, "name": "👍" }));
        assert_eq!((&d[0].1.data["user_id"], &d[0].1.data["message_author_id"]), (&json!("2"), &json!("1")));
        assert_eq!(g.audience(d[0].0), vec![SessionId(1)], "only sessions with GUILD_MESSAGE_REACTIONS");
        assert_eq!(reply(&fx), &Ok(Reply::Done));

        g.handle(cmd(
            2,
            MessageCommand::RemoveReaction { user: BOB, existing: Box::new(msg.clone()), emoji: thumbs.clone() },
        ));
        let fx = g.handle(Input::Persisted { request: 2, result: Ok(()) });
        assert_eq!(dispatches(&fx)[0].1.name, "MESSAGE_REACTION_REMOVE");
        let fx = g.handle(cmd(3, MessageCommand::AddReaction { user: CAROL, existing: Box::new(msg), emoji: thumbs }));
        assert_eq!(reply(&fx), &Err(GuildError::NotMember));
    }

    #[test]
    fn a_retry_with_an_enforced_nonce_gets_the_first_message_even_while_it_is_stored() {
        let mut g = guild();
        g.handle(cmd(1, create_with_nonce(1_000, "n", true)));
        // The retry comes while the first is being stored: it waits for it.
        assert!(g.handle(cmd(2, create_with_nonce(1_100, "n", true))).is_empty());
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        let first = Snowflake(1_000 << 22);
        let got = answers(&fx);
        assert!(matches!(&got[0], (1, Ok(Reply::Message(m))) if m.id == first), "{got:?}");
        assert_eq!(got[1], (2, Ok(Reply::Existing { channel_id: GENERAL, message_id: first })));
        assert!(!fx.iter().any(|e| matches!(e, Effect::Persist { .. })), "the retry wrote nothing");
        // Later still, within the window: the same.
        let fx = g.handle(cmd(3, create_with_nonce(1_000 + 60_000, "n", true)));
        assert_eq!(answers(&fx), [(3, Ok(Reply::Existing { channel_id: GENERAL, message_id: first }))]);
        // Without enforce_nonce, or with another nonce, a new message.
        for (request, create) in [(4, create_with_nonce(2_000, "n", false)), (5, create_with_nonce(2_100, "m", true))] {
            let fx = g.handle(cmd(request, create));
            assert!(fx.iter().any(|e| matches!(e, Effect::Persist { .. })), "request {request}");
            g.handle(Input::Persisted { request, result: Ok(()) });
        }
        // Past the window (of the latest message with "n", request 4's), a new message too.
        let fx = g.handle(cmd(6, create_with_nonce(2_000 + RecentNonces::WINDOW_MS, "n", true)));
        assert!(fx.iter().any(|e| matches!(e, Effect::Persist { .. })));
    }

    /// A create whose write failed or timed out may still have been stored (a timeout
    /// cannot tell): its retry writes the same message again, under the same id, so that
    /// it is stored once whichever happened. Before, the retry made a second message.
    #[test]
    fn a_failed_or_blocked_create_frees_its_nonce_for_the_retry() {
        let mut g = guild();
        let first = Snowflake(1_000 << 22);
        g.handle(cmd(1, create_with_nonce(1_000, "n", true)));
        let fx = g.handle(Input::Persisted { request: 1, result: Err(WriteError::Unavailable("timed out".into())) });
        assert!(matches!(&answers(&fx)[0], (1, Err(GuildError::Storage(_)))));
        let fx = g.handle(cmd(2, create_with_nonce(1_100, "n", true)));
        let rewrite =
            fx.iter().any(|e| matches!(e, Effect::Persist { write: GuildWrite::PutMessage(m), .. } if m.id == first));
        assert!(rewrite, "the retry writes the unsure message again: {fx:?}");
        let fx = g.handle(Input::Persisted { request: 2, result: Ok(()) });
        assert!(matches!(&answers(&fx)[0], (2, Ok(Reply::Message(m))) if m.id == first));
        let fx = g.handle(cmd(3, create_with_nonce(1_200, "n", true)));
        assert_eq!(answers(&fx), [(3, Ok(Reply::Existing { channel_id: GENERAL, message_id: first }))]);

        g.handle(Input::SetModeration { enabled: true });
        let fx = g.handle(cmd(4, create_with_nonce(2_000, "blocked", true)));
        assert!(fx.iter().any(|e| matches!(e, Effect::Moderate { .. })));
        assert!(g.handle(cmd(5, create_with_nonce(2_100, "blocked", true))).is_empty(), "waits for the verdict");
        let fx = g.handle(Input::Moderated { request: 4, verdict: ModerationVerdict::Block("no".into()) });
        assert!(matches!(&answers(&fx)[0], (4, Err(GuildError::Blocked(_)))));
        assert!(fx.iter().any(|e| matches!(e, Effect::Moderate { request: 5, .. })), "the retry runs: {fx:?}");
    }

    #[test]
    fn moderation_blocks_rewrites_or_allows_before_anything_is_stored() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        let create = |content: &str| MessageCommand::Create {
            author: BOB,
            channel_id: GENERAL,
            id: Snowflake(500),
            content: content.into(),
            nonce: None,
            enforce_nonce: false,
        };
        // Off: straight to storage.
        assert!(matches!(&g.handle(cmd(1, create("a")))[0], Effect::Persist { .. }));
        g.handle(Input::SetModeration { enabled: true });
        let fx = g.handle(cmd(2, create("bad words")));
        let [Effect::Moderate { request: 2, candidate }] = fx.as_slice() else { panic!("{fx:?}") };
        assert_eq!((candidate.content.as_str(), candidate.is_edit, candidate.author.id), ("bad words", false, BOB));
        let fx = g.handle(Input::Moderated { request: 2, verdict: ModerationVerdict::Block("no".into()) });
        assert_eq!(fx, vec![Effect::Reply { request: 2, result: Err(GuildError::Blocked("no".into())) }]);

        g.handle(cmd(3, create("darn it <@1>")));
        let fx = g.handle(Input::Moderated { request: 3, verdict: ModerationVerdict::Rewrite("**** it <@1>".into()) });
        let Effect::Persist { write: GuildWrite::PutMessage(m), .. } = &fx[0] else { panic!("{fx:?}") };
        assert_eq!(m.content, "**** it <@1>");
        assert_eq!(m.mentions[0].id, OWNER);
        g.handle(cmd(4, create("x")));
        let fx = g.handle(Input::Moderated { request: 4, verdict: ModerationVerdict::Rewrite("  ".into()) });
        assert!(matches!(reply(&fx), Err(GuildError::Blocked(_))), "a rewrite to nothing is a block");
        g.handle(cmd(5, create("fine")));
        let fx = g.handle(Input::Moderated { request: 5, verdict: ModerationVerdict::Allow });
        assert!(matches!(&fx[0], Effect::Persist { .. }));
    }

    #[test]
    fn typing_reaches_channel_viewers_with_typing_intent() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, intents::GUILD_MESSAGE_TYPING);
        connect(&mut g, 2, BOB, intents::GUILD_MESSAGES);
        let fx = g.handle(cmd(1, MessageCommand::Typing { user: BOB, channel_id: GENERAL, unix_s: 5 }));
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "TYPING_START");
        assert_eq!(g.audience(d[0].0), vec![SessionId(1)]);
        assert_eq!(reply(&fx), &Ok(Reply::Done));
    }
}
