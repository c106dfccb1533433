// Your first bot, in JavaScript (examples/js/README.md walks through it).
//
// It answers `!hello` and remembers, in its key-value store, how many times each member
// said it: the store is private to this bot in this guild and survives restarts.
import * as kv from 'guildhall:plugin/kv@0.1.0';
import { send } from 'guildhall:plugin/messages@0.1.0';
import { parseConfig } from '../../sdk/js/guildhall.js';

let greeting = 'Hello';

// The reply for someone's `count`-th hello.
export function reply(greeting, userId, count) {
  const times = count === 1 ? '1 hello' : `${count} hellos`;
  return `${greeting} <@${userId}>! That makes ${times} from you.`;
}

/** @satisfies {typeof import('guildhall:plugin/events@0.1.0')} (checked by tsc: tsconfig.*.json) */
export const events = {
  init(config) {
    // Configuration is whatever JSON object the guild owner set; `{}` by default.
    const c = parseConfig(config);
    greeting = typeof c.greeting === 'string' ? c.greeting : 'Hello';
  },

  onEvent(event) {
    if (event.tag !== 'message-create') return;
    const message = event.val;
    if (message.author.bot || message.content.trim() !== '!hello') return; // never answer bots
    const key = `hellos:${message.author.id}`;
    const stored = kv.get(key); // a Uint8Array, or undefined
    const previous = stored === undefined ? 0 : Number(new TextDecoder().decode(stored)) || 0;
    const count = previous + 1;
    try {
      kv.set(key, new TextEncoder().encode(String(count)));
    } catch {
      // Quotas apply (keys, bytes); if the store refuses, still answer.
    }
    try {
      send(message.channelId, reply(greeting, message.author.id, count));
    } catch {
      // Out of its writes per minute: nothing to do.
    }
  },
};
