/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/messages@0.1.0' {
  /**
   * Sends a message as the bot user (at most the per-minute quota).
   */
  export function send(channelId: Snowflake, content: string): Message;
  /**
   * Edits one of the bot's own messages.
   */
  export function edit(channelId: Snowflake, messageId: Snowflake, content: string): Message;
  /**
   * Deletes one of the bot's own messages.
   */
  export { _delete as delete };
  function _delete(channelId: Snowflake, messageId: Snowflake): void;
  /**
   * The latest messages of a channel, newest first (at most 100).
   */
  export function recent(channelId: Snowflake, limit: number): Array<Message>;
  /**
   * Reacts to a message with a Unicode emoji, as the bot user (counts against the
   * per-minute quota, like a message).
   */
  export function react(channelId: Snowflake, messageId: Snowflake, emoji: string): void;
  /**
   * Takes the bot's reaction back.
   */
  export function unreact(channelId: Snowflake, messageId: Snowflake, emoji: string): void;
  export type Snowflake = import('guildhall:plugin/types@0.1.0').Snowflake;
  export type Message = import('guildhall:plugin/types@0.1.0').Message;
  export type HostError = import('guildhall:plugin/types@0.1.0').HostError;
}
