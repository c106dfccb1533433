/// <reference path="./interfaces/guildhall-plugin-clock.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-events.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-guild.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-kv.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-log.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-messages.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-pubsub.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-text.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-timers.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/bot@0.1.0' {
  export type * as GuildhallPluginClock010 from 'guildhall:plugin/clock@0.1.0'; // import guildhall:plugin/clock@0.1.0
  export type * as GuildhallPluginGuild010 from 'guildhall:plugin/guild@0.1.0'; // import guildhall:plugin/guild@0.1.0
  export type * as GuildhallPluginKv010 from 'guildhall:plugin/kv@0.1.0'; // import guildhall:plugin/kv@0.1.0
  export type * as GuildhallPluginLog010 from 'guildhall:plugin/log@0.1.0'; // import guildhall:plugin/log@0.1.0
  export type * as GuildhallPluginMessages010 from 'guildhall:plugin/messages@0.1.0'; // import guildhall:plugin/messages@0.1.0
  export type * as GuildhallPluginPubsub010 from 'guildhall:plugin/pubsub@0.1.0'; // import guildhall:plugin/pubsub@0.1.0
  export type * as GuildhallPluginText010 from 'guildhall:plugin/text@0.1.0'; // import guildhall:plugin/text@0.1.0
  export type * as GuildhallPluginTimers010 from 'guildhall:plugin/timers@0.1.0'; // import guildhall:plugin/timers@0.1.0
  export type * as GuildhallPluginTypes010 from 'guildhall:plugin/types@0.1.0'; // import guildhall:plugin/types@0.1.0
  export * as events from 'guildhall:plugin/events@0.1.0'; // export guildhall:plugin/events@0.1.0
}
