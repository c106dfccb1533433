declare module 'guildhall:plugin/types@0.1.0' {
  /**
   * A snowflake id: 42 bits of milliseconds since 2015, then worker and sequence bits.
   */
  export type Snowflake = bigint;
  export interface User {
    id: Snowflake,
    username: string,
    bot: boolean,
  }
  export interface Member {
    user: User,
    nick?: string,
    /**
     * ISO 8601.
     */
    joinedAt: string,
  }
  export interface Channel {
    id: Snowflake,
    name: string,
  }
  export interface Message {
    id: Snowflake,
    channelId: Snowflake,
    guildId: Snowflake,
    author: User,
    content: string,
    /**
     * ISO 8601.
     */
    timestamp: string,
    editedTimestamp?: string,
    /**
     * Users mentioned as <@id>.
     */
    mentions: BigUint64Array,
  }
  export interface MessageRef {
    id: Snowflake,
    channelId: Snowflake,
  }
  /**
   * A pub/sub message as the receiving plugin names it: `PLUGIN.SUBJECT` for what a
   * plugin of the same guild published, `shared.SUBJECT` for an operator-granted subject.
   */
  export interface Published {
    subject: string,
    payload: Uint8Array,
  }
  export interface Reaction {
    userId: Snowflake,
    channelId: Snowflake,
    messageId: Snowflake,
    /**
     * A Unicode emoji, e.g. "👍".
     */
    emoji: string,
  }
  export interface TimerFired {
    id: bigint,
    payload: string,
  }
  /**
   * Something that happened in the guild the plugin serves.
   */
  export type GuildEvent = GuildEventMessageCreate | GuildEventMessageUpdate | GuildEventMessageDelete | GuildEventMemberJoin | GuildEventReactionAdd | GuildEventReactionRemove | GuildEventTimer | GuildEventPublished;
  export interface GuildEventMessageCreate {
    tag: 'message-create',
    val: Message,
  }
  export interface GuildEventMessageUpdate {
    tag: 'message-update',
    val: Message,
  }
  export interface GuildEventMessageDelete {
    tag: 'message-delete',
    val: MessageRef,
  }
  export interface GuildEventMemberJoin {
    tag: 'member-join',
    val: Member,
  }
  /**
   * A member (or a bot) reacted to a message.
   */
  export interface GuildEventReactionAdd {
    tag: 'reaction-add',
    val: Reaction,
  }
  /**
   * A reaction was taken back.
   */
  export interface GuildEventReactionRemove {
    tag: 'reaction-remove',
    val: Reaction,
  }
  /**
   * A timer this plugin set came due; the payload it was set with.
   */
  export interface GuildEventTimer {
    tag: 'timer',
    val: TimerFired,
  }
  /**
   * A message on a subject this plugin subscribed to (see `pubsub`).
   */
  export interface GuildEventPublished {
    tag: 'published',
    val: Published,
  }
  /**
   * A message about to be created or edited, before anyone can see it.
   */
  export interface Candidate {
    channelId: Snowflake,
    author: User,
    content: string,
    /**
     * An edit of an existing message, rather than a new one.
     */
    isEdit: boolean,
    mentions: BigUint64Array,
  }
  /**
   * What moderation decides.
   */
  export type Verdict = VerdictAllow | VerdictBlock | VerdictRewrite | VerdictFlag;
  /**
   * Store and deliver as it is.
   */
  export interface VerdictAllow {
    tag: 'allow',
  }
  /**
   * Refuse: nobody sees it, nothing is stored; the reason goes to the author.
   */
  export interface VerdictBlock {
    tag: 'block',
    val: string,
  }
  /**
   * Store and deliver this content instead.
   */
  export interface VerdictRewrite {
    tag: 'rewrite',
    val: string,
  }
  /**
   * Allow, and record the reason for the guild's moderators.
   */
  export interface VerdictFlag {
    tag: 'flag',
    val: string,
  }
  /**
   * A searchable document made from events (the indexing world).
   */
  export interface Document {
    id: string,
    channelId: Snowflake,
    authorId: Snowflake,
    timestamp: string,
    text: string,
    tags: Array<string>,
  }
  /**
   * Why a host call was refused.
   */
  export type HostError = HostErrorNotFound | HostErrorDenied | HostErrorLimited | HostErrorInvalid | HostErrorUnavailable;
  /**
   * The thing does not exist (in this guild).
   */
  export interface HostErrorNotFound {
    tag: 'not-found',
  }
  /**
   * Not allowed: e.g. a channel of another guild.
   */
  export interface HostErrorDenied {
    tag: 'denied',
    val: string,
  }
  /**
   * A limit was reached (writes per minute, key-value bytes, timers).
   */
  export interface HostErrorLimited {
    tag: 'limited',
    val: string,
  }
  /**
   * Bad argument (empty content, content too long, ...).
   */
  export interface HostErrorInvalid {
    tag: 'invalid',
    val: string,
  }
  /**
   * Storage or the guild is unavailable right now; try later.
   */
  export interface HostErrorUnavailable {
    tag: 'unavailable',
    val: string,
  }
}
