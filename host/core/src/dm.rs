//! The DM channel state machine: one per DM channel, sans-IO, like [`GuildState`] for a
//! guild. It knows the channel's recipients, decides who may do what, and follows the same
//! write rule: persist first (`DmEffect::Persist`), and only when the runtime reports
//! `Input::Persisted` apply, deliver and answer.
//!
//! It takes the guild's [`Command`]s and [`Input`]s (a DM actor is addressed like a guild
//! actor); what a DM cannot do is refused with the error Discord gives.
//!
//! [`GuildState`]: crate::guild::GuildState

use std::collections::HashMap;

use crate::event::GuildEvent;
use crate::gateway::{intents, Intents};
use crate::guild::{
    Command, GuildCommand, GuildError, GuildWrite, Input, MessageCommand, Reply, RequestId, WriteError,
};
use crate::model::{mentioned_user_ids, Channel, Message, User, UserId};
use crate::permissions::Permissions;

/// What a recipient may do in a DM (Discord's implicit DM permissions).
pub const DM_PERMISSIONS: Permissions = Permissions(
    Permissions::VIEW_CHANNEL.0
        | Permissions::SEND_MESSAGES.0
        | Permissions::READ_MESSAGE_HISTORY.0
        | Permissions::EMBED_LINKS.0
        | Permissions::ATTACH_FILES.0
        | Permissions::ADD_REACTIONS.0,
);

#[derive(Debug, Clone, PartialEq)]
pub enum DmEffect {
    Persist {
        request: RequestId,
        write: GuildWrite,
    },
    Reply {
        request: RequestId,
        result: Result<Reply, GuildError>,
    },
    /// To every session, wherever it is, of every recipient that asked for `intent`.
    Deliver {
        intent: Intents,
        event: Box<GuildEvent>,
    },
}

/// What to deliver and answer once a write is stored.
#[derive(Debug, Clone)]
enum AfterPersist {
    Created(Message),
    Edited(Message),
    Deleted(Message),
}

pub struct DmState {
    channel: Channel,
    pending: HashMap<RequestId, AfterPersist>,
}

impl DmState {
    /// `channel` is a DM channel (no guild; its recipients are the participants).
    pub fn new(channel: Channel) -> DmState {
        assert!(channel.guild_id.is_none(), "a DM channel belongs to no guild");
        DmState { channel, pending: HashMap::new() }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    pub fn recipients(&self) -> impl Iterator<Item = UserId> + '_ {
        self.channel.recipients.iter().map(|u| u.id)
    }

    /// Writes stored but not yet answered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn handle(&mut self, input: Input) -> Vec<DmEffect> {
        let mut fx = Vec::new();
        match input {
            Input::Command { request, command } => self.on_command(request, *command, &mut fx),
            Input::Persisted { request, result } => self.on_persisted(request, result, &mut fx),
            // Sessions are not attached to a DM (its events go to the recipients' sessions),
            // and DMs are not moderated by guild plugins.
            Input::SessionConnect { .. }
            | Input::SessionDisconnect { .. }
            | Input::SessionMoved { .. }
            | Input::PresenceUpdate { .. }
            | Input::SetModeration { .. }
            | Input::Moderated { .. } => {}
        }
        fx
    }

    fn recipient(&self, user: UserId) -> Result<&User, GuildError> {
        self.channel.recipients.iter().find(|u| u.id == user).ok_or(GuildError::NotMember)
    }

    fn own_message(&self, user: UserId, existing: &Message) -> Result<(), GuildError> {
        self.recipient(user)?;
        if existing.channel_id != self.channel.id {
            return Err(GuildError::UnknownChannel);
        }
        Ok(())
    }

    fn mentions(&self, content: &str) -> Vec<User> {
        let ids = mentioned_user_ids(content);
        self.channel.recipients.iter().filter(|r| ids.contains(&r.id)).cloned().collect()
    }

    fn on_command(&mut self, request: RequestId, command: Command, fx: &mut Vec<DmEffect>) {
        let mut refuse = |e| fx.push(DmEffect::Reply { request, result: Err(e) });
        match command {
            Command::Message(MessageCommand::Create { author, channel_id, id, content, nonce, .. }) => {
                let author = match self.recipient(author) {
                    Ok(u) if channel_id == self.channel.id => u.clone(),
                    Ok(_) => return refuse(GuildError::UnknownChannel),
                    Err(e) => return refuse(e),
                };
                let mut message = Message::new(id, &self.channel, author, content, nonce);
                message.mentions = self.mentions(&message.content);
                self.persist(request, GuildWrite::PutMessage(message.clone()), AfterPersist::Created(message), fx);
            }
            Command::Message(MessageCommand::Edit { user, existing, content, edited_timestamp }) => {
                if let Err(e) = self.own_message(user, &existing) {
                    return refuse(e);
                }
                if existing.author.id != user {
                    return refuse(GuildError::NotAuthor);
                }
                let mut message = *existing;
                message.mentions = self.mentions(&content);
                message.content = content;
                message.edited_timestamp = Some(edited_timestamp);
                message.nonce = None;
                self.persist(request, GuildWrite::EditMessage(message.clone()), AfterPersist::Edited(message), fx);
            }
            Command::Message(MessageCommand::Delete { user, existing }) => {
                if let Err(e) = self.own_message(user, &existing) {
                    return refuse(e);
                }
                // In a DM only the author deletes (nobody manages a DM's messages).
                if existing.author.id != user {
                    return refuse(GuildError::MissingPermissions);
                }
                let write = GuildWrite::DeleteMessage { channel_id: existing.channel_id, message_id: existing.id };
                self.persist(request, write, AfterPersist::Deleted(*existing), fx);
            }
            Command::Message(MessageCommand::Typing { user, channel_id, unix_s }) => {
                if let Err(e) = self.recipient(user) {
                    return refuse(e);
                }
                let event = GuildEvent::TypingStart { channel_id, guild_id: None, user_id: user, unix_s, member: None };
                fx.push(DmEffect::Deliver { intent: intents::DIRECT_MESSAGE_TYPING, event: Box::new(event) });
                fx.push(DmEffect::Reply { request, result: Ok(Reply::Done) });
            }
            Command::Guild(GuildCommand::Permissions { user, .. }) => {
                let result = self.recipient(user).map(|_| Reply::Permissions(DM_PERMISSIONS));
                fx.push(DmEffect::Reply { request, result });
            }
            Command::Guild(GuildCommand::Readable { user }) => {
                let result = self.recipient(user).map(|_| Reply::Channels(vec![self.channel.clone()]));
                fx.push(DmEffect::Reply { request, result });
            }
            // Nothing else is done in a DM: no reactions yet, no members, roles or settings.
            Command::Message(MessageCommand::AddReaction { .. } | MessageCommand::RemoveReaction { .. })
            | Command::Guild(GuildCommand::Snapshot { .. } | GuildCommand::UpdateGuild { .. })
            | Command::Member(_)
            | Command::Ban(_)
            | Command::Role(_)
            | Command::Channel(_) => refuse(GuildError::MissingPermissions),
        }
    }

    fn persist(&mut self, request: RequestId, write: GuildWrite, after: AfterPersist, fx: &mut Vec<DmEffect>) {
        let previous = self.pending.insert(request, after);
        debug_assert!(previous.is_none(), "request ids are unique");
        fx.push(DmEffect::Persist { request, write });
    }

    fn on_persisted(&mut self, request: RequestId, result: Result<(), WriteError>, fx: &mut Vec<DmEffect>) {
        let Some(after) = self.pending.remove(&request) else { return };
        if let Err(e) = result {
            let err = match e {
                WriteError::NotFound => GuildError::UnknownMessage,
                WriteError::Unavailable(m) => GuildError::Storage(m),
            };
            return fx.push(DmEffect::Reply { request, result: Err(err) });
        }
        let (event, reply) = match after {
            AfterPersist::Created(m) => {
                (GuildEvent::MessageCreate { message: m.clone(), member: None }, Reply::Message(m))
            }
            AfterPersist::Edited(m) => {
                (GuildEvent::MessageUpdate { message: m.clone(), member: None }, Reply::Message(m))
            }
            AfterPersist::Deleted(m) => {
                (GuildEvent::MessageDelete { id: m.id, channel_id: m.channel_id, guild_id: None }, Reply::Done)
            }
        };
        fx.push(DmEffect::Deliver { intent: intents::DIRECT_MESSAGES, event: Box::new(event) });
        fx.push(DmEffect::Reply { request, result: Ok(reply) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChannelId;
    use crate::Snowflake;

    const ALICE: UserId = Snowflake(1);
    const BOB: UserId = Snowflake(2);
    const EVE: UserId = Snowflake(3);
    const DM: ChannelId = Snowflake(50);

    fn dm() -> DmState {
        DmState::new(Channel::dm(DM, User::new(ALICE, "alice", false), User::new(BOB, "bob", false)))
    }

    fn cmd(request: RequestId, command: impl Into<Command>) -> Input {
        Input::Command { request, command: Box::new(command.into()) }
    }

    fn create(request: RequestId, author: UserId, content: &str) -> Input {
        cmd(
            request,
            MessageCommand::Create {
                author,
                channel_id: DM,
                id: Snowflake(1000 + request),
                content: content.into(),
                nonce: None,
                enforce_nonce: false,
            },
        )
    }

    fn stored(fx: &[DmEffect]) -> Message {
        match fx {
            [DmEffect::Persist { write: GuildWrite::PutMessage(m) | GuildWrite::EditMessage(m), .. }] => m.clone(),
            other => panic!("expected one write, got {other:?}"),
        }
    }

    #[test]
    fn a_message_is_stored_then_delivered_to_the_recipients_then_answered() {
        let mut s = dm();
        let fx = s.handle(create(1, ALICE, "hi <@2> and <@3>"));
        let message = stored(&fx);
        assert_eq!(message.mentions.iter().map(|u| u.id).collect::<Vec<_>>(), [BOB], "only recipients are mentioned");
        assert_eq!(s.in_flight(), 1);
        let fx = s.handle(Input::Persisted { request: 1, result: Ok(()) });
        match &fx[..] {
            [DmEffect::Deliver { intent, event }, DmEffect::Reply { result: Ok(Reply::Message(m)), .. }] => {
                assert_eq!(*intent, intents::DIRECT_MESSAGES);
                assert_eq!(event.name(), "MESSAGE_CREATE");
                assert_eq!(m, &message);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn a_failed_write_delivers_nothing() {
        let mut s = dm();
        s.handle(create(1, ALICE, "hi"));
        let fx = s.handle(Input::Persisted { request: 1, result: Err(WriteError::Unavailable("down".into())) });
        assert_eq!(fx, [DmEffect::Reply { request: 1, result: Err(GuildError::Storage("down".into())) }]);
    }

    #[test]
    fn only_recipients_write_and_only_authors_edit_or_delete() {
        let mut s = dm();
        assert_eq!(
            s.handle(create(1, EVE, "let me in")),
            [DmEffect::Reply { request: 1, result: Err(GuildError::NotMember) }]
        );
        let read = |user| cmd(2, GuildCommand::Permissions { user, channel_id: Some(DM) });
        assert_eq!(s.handle(read(EVE)), [DmEffect::Reply { request: 2, result: Err(GuildError::NotMember) }]);
        assert_eq!(
            s.handle(read(BOB)),
            [DmEffect::Reply { request: 2, result: Ok(Reply::Permissions(DM_PERMISSIONS)) }]
        );

        let message = stored(&s.handle(create(3, ALICE, "mine")));
        s.handle(Input::Persisted { request: 3, result: Ok(()) });
        let edit = |request, user| {
            cmd(
                request,
                MessageCommand::Edit {
                    user,
                    existing: Box::new(message.clone()),
                    content: "changed".into(),
                    edited_timestamp: "t".into(),
                },
            )
        };
        assert_eq!(s.handle(edit(4, BOB)), [DmEffect::Reply { request: 4, result: Err(GuildError::NotAuthor) }]);
        let delete = |request, user| cmd(request, MessageCommand::Delete { user, existing: Box::new(message.clone()) });
        assert_eq!(
            s.handle(delete(5, BOB)),
            [DmEffect::Reply { request: 5, result: Err(GuildError::MissingPermissions) }]
        );
        assert_eq!(stored(&s.handle(edit(6, ALICE))).content, "changed");
        assert!(matches!(
            &s.handle(delete(7, ALICE))[..],
            [DmEffect::Persist { write: GuildWrite::DeleteMessage { .. }, .. }]
        ));
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn typing_goes_to_the_recipients_with_the_typing_intent() {
        let mut s = dm();
        let fx = s.handle(cmd(1, MessageCommand::Typing { user: BOB, channel_id: DM, unix_s: 9 }));
        assert!(matches!(
            &fx[..],
            [
                DmEffect::Deliver { intent: intents::DIRECT_MESSAGE_TYPING, .. },
                DmEffect::Reply { result: Ok(Reply::Done), .. }
            ]
        ));
    }
}
