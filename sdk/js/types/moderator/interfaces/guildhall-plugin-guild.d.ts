/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/guild@0.1.0' {
  export function guildId(): Snowflake;
  export function findChannel(id: Snowflake): Channel | undefined;
  export function listChannels(): Array<Channel>;
  export function findMember(userId: Snowflake): Member | undefined;
  export type Snowflake = import('guildhall:plugin/types@0.1.0').Snowflake;
  export type Channel = import('guildhall:plugin/types@0.1.0').Channel;
  export type Member = import('guildhall:plugin/types@0.1.0').Member;
}
