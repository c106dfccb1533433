/// <reference path="./interfaces/guildhall-plugin-clock.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-indexing.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-log.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/indexer@0.1.0' {
  export type * as GuildhallPluginClock010 from 'guildhall:plugin/clock@0.1.0'; // import guildhall:plugin/clock@0.1.0
  export type * as GuildhallPluginLog010 from 'guildhall:plugin/log@0.1.0'; // import guildhall:plugin/log@0.1.0
  export type * as GuildhallPluginTypes010 from 'guildhall:plugin/types@0.1.0'; // import guildhall:plugin/types@0.1.0
  export * as indexing from 'guildhall:plugin/indexing@0.1.0'; // export guildhall:plugin/indexing@0.1.0
}
