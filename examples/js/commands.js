// commands, in JavaScript: the twin of plugins/commands (Rust). A bot answering `!ping`,
// `!roll NdM`, `!poll q | a | b` (with reactions to vote), `!remind <minutes> <text>` and
// `!help`. Configuration: {"prefix": "!"} (1 to 3 characters; `!` by default).
// Reminders are host timers: they come even if the bot is reloaded or the host restarts.
//
// Build: node sdk/js/build.mjs examples/js/commands.js --world bot -o commands.wasm
import { nowMs } from 'guildhall:plugin/clock@0.1.0';
import { react, send } from 'guildhall:plugin/messages@0.1.0';
import { set as setTimer } from 'guildhall:plugin/timers@0.1.0';
import { hostError, parseConfig, Random } from '../../sdk/js/guildhall.js';

// Longest reminder, in minutes (one week).
const MAX_REMIND_MINUTES = 7 * 24 * 60;
// Voting buttons: keycap digits 1 to 9, then ten.
const POLL_EMOJIS = ['1️⃣', '2️⃣', '3️⃣', '4️⃣', '5️⃣', '6️⃣', '7️⃣', '8️⃣', '9️⃣', '🔟'];

let prefix = '!';
let random = null;

// What to do about a message: { say }, { poll, reactions }, { remind, payload, ack } or null.
function respond(content, authorId, channelId) {
  const text = content.trim();
  if (!text.startsWith(prefix)) return null;
  const rest = text.slice(prefix.length);
  const space = rest.search(/\s/);
  const [command, args] = space < 0 ? [rest, ''] : [rest.slice(0, space), rest.slice(space).trim()];
  switch (command) {
    case 'ping':
      return { say: 'pong' };
    case 'roll':
      return { say: roll(args) };
    case 'poll':
      return poll(args);
    case 'remind':
      return remind(args, authorId, channelId);
    case 'help':
      return {
        say: `commands: ${prefix}ping, ${prefix}roll NdM, ${prefix}poll question | option | option..., ${prefix}remind <minutes> <text>, ${prefix}help`,
      };
    default:
      return null;
  }
}

function roll(args) {
  const usage = `usage: ${prefix}roll NdM, e.g. ${prefix}roll 2d6 (N up to 100, M from 2 to 1000)`;
  const d = args.indexOf('d');
  if (d < 0) return usage;
  const n = d === 0 ? 1 : wholeNumber(args.slice(0, d));
  const m = wholeNumber(args.slice(d + 1));
  if (!(n >= 1 && n <= 100) || !(m >= 2 && m <= 1000)) return usage;
  const rolls = Array.from({ length: n }, () => random.roll(m));
  const total = rolls.reduce((a, b) => a + b, 0);
  return `rolled ${n}d${m}: ${rolls.join(' + ')} = ${total}`;
}

function wholeNumber(text) {
  return /^\d+$/.test(text) ? Number(text) : 0;
}

function poll(args) {
  const parts = args.split('|').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length < 3 || parts.length > 11) {
    return { say: `usage: ${prefix}poll question | option | option (2 to 10 options)` };
  }
  let text = `poll: ${parts[0]}`;
  parts.slice(1).forEach((option, i) => {
    text += `\n${POLL_EMOJIS[i]} ${option}`;
  });
  return { poll: text, reactions: POLL_EMOJIS.slice(0, parts.length - 1) };
}

function remind(args, authorId, channelId) {
  const usage = { say: `usage: ${prefix}remind <minutes> <text>` };
  const space = args.search(/\s/);
  if (space < 0) return usage;
  const minutes = Number(args.slice(0, space));
  const text = args.slice(space).trim();
  if (!(minutes > 0 && minutes <= MAX_REMIND_MINUTES) || text.length === 0) return usage;
  return {
    remind: Math.floor(minutes * 60000),
    payload: JSON.stringify({ channel: String(channelId), user: String(authorId), text }),
    ack: `<@${authorId}> I will remind you in ${minutes} minute(s).`,
  };
}

// The message a due reminder sends: [channel, content], or null.
function reminderMessage(payload) {
  try {
    const v = JSON.parse(payload);
    if (typeof v.channel !== 'string' || typeof v.user !== 'string' || typeof v.text !== 'string') return null;
    return [BigInt(v.channel), `<@${v.user}> reminder: ${v.text}`];
  } catch {
    return null;
  }
}

/** @satisfies {typeof import('guildhall:plugin/events@0.1.0')} (checked by tsc: tsconfig.*.json) */
export const events = {
  init(config) {
    const c = parseConfig(config);
    const p = c.prefix ?? '!';
    if (typeof p !== 'string') throw 'prefix must be a string';
    if (p.length === 0 || [...p].length > 3 || /\s/.test(p)) throw 'prefix must be 1 to 3 characters without spaces';
    prefix = p;
    random = new Random(nowMs());
  },

  onEvent(event) {
    if (event.tag === 'message-create' && !event.val.author.bot) {
      const { content, author, channelId } = event.val;
      const action = respond(content, author.id, channelId);
      if (action === null) return;
      if (action.say !== undefined) {
        trySend(channelId, action.say);
      } else if (action.poll !== undefined) {
        const message = trySend(channelId, action.poll);
        if (message === null) return;
        for (const emoji of action.reactions) {
          try {
            react(channelId, message.id, emoji);
          } catch {
            break; // out of quota: the options are listed anyway
          }
        }
      } else if (action.remind !== undefined) {
        let said = action.ack;
        try {
          setTimer(BigInt(action.remind), action.payload);
        } catch (e) {
          said = `cannot set a reminder: ${hostError(e)}`;
        }
        trySend(channelId, said);
      }
    } else if (event.tag === 'timer') {
      const due = reminderMessage(event.val.payload);
      if (due !== null) trySend(due[0], due[1]);
    }
  },
};

function trySend(channelId, text) {
  try {
    return send(channelId, text);
  } catch {
    return null; // out of quota, or the channel is gone
  }
}
