/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/indexing@0.1.0' {
  export function init(config: string): void;
  export function index(events: Array<GuildEvent>): Array<Document>;
  export type GuildEvent = import('guildhall:plugin/types@0.1.0').GuildEvent;
  export type Document = import('guildhall:plugin/types@0.1.0').Document;
}
