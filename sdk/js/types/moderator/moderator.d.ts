/// <reference path="./interfaces/guildhall-plugin-clock.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-guild.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-log.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-moderation.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-text.d.ts" />
/// <reference path="./interfaces/guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/moderator@0.1.0' {
  export type * as GuildhallPluginClock010 from 'guildhall:plugin/clock@0.1.0'; // import guildhall:plugin/clock@0.1.0
  export type * as GuildhallPluginGuild010 from 'guildhall:plugin/guild@0.1.0'; // import guildhall:plugin/guild@0.1.0
  export type * as GuildhallPluginLog010 from 'guildhall:plugin/log@0.1.0'; // import guildhall:plugin/log@0.1.0
  export type * as GuildhallPluginText010 from 'guildhall:plugin/text@0.1.0'; // import guildhall:plugin/text@0.1.0
  export type * as GuildhallPluginTypes010 from 'guildhall:plugin/types@0.1.0'; // import guildhall:plugin/types@0.1.0
  export * as moderation from 'guildhall:plugin/moderation@0.1.0'; // export guildhall:plugin/moderation@0.1.0
}
