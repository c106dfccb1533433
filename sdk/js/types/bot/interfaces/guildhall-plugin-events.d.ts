/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/events@0.1.0' {
  export function init(config: string): void;
  export function onEvent(event: GuildEvent): void;
  export type GuildEvent = import('guildhall:plugin/types@0.1.0').GuildEvent;
}
