// A discord.js bot, unmodified but for where Discord is, driven through issue 10's scenario:
// the twin of discordpy_bot.py (see there). discord.js is pointed at the host with its own
// option, `rest.api`; it finds the gateway through GET /gateway/bot. DMs need the Channel
// partial, as on Discord (the discord.js guide says so). The dropped connection is the
// gateway's TCP socket destroyed under the library, with no close frame.
//
// Prints one line per step and PASS at the end; any failure exits with status 1.

import assert from 'node:assert/strict';
import { Client, DiscordAPIError, Events, GatewayIntentBits, Partials } from 'discord.js';

const ENV = process.env;
const API = ENV.GUILDHALL_API; // http://127.0.0.1:PORT/api/v10
const { GUILD_ID, GENERAL_ID, QUIET_ID, SECRET_ID } = ENV;
const HISTORY = Number(ENV.HISTORY_COUNT);
const STEP_TIMEOUT_MS = 20_000;

const step = (text) => console.log(text);

/** Someone using the REST API directly (not through a library). */
class Person {
  constructor(token) {
    this.token = token;
  }

  async call(method, path, body, ok = [200, 201, 204]) {
    const response = await fetch(API + path, {
      method,
      headers: { Authorization: this.token, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json();
    assert.ok(ok.includes(response.status), `${method} ${path}: ${response.status} ${JSON.stringify(data)}`);
    return data;
  }

  say(channel, content) {
    return this.call('POST', `/channels/${channel}/messages`, { content });
  }
}

/** Resolves with the next emitted value that `predicate` accepts, or rejects after a while. */
function next(emitter, event, predicate = () => true, timeoutMs = STEP_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out waiting for ${event}`));
    }, timeoutMs);
    const listener = (...args) => {
      if (!predicate(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    };
    emitter.on(event, listener);
  });
}

async function expectRefusal(promise, code) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DiscordAPIError, `${error}`);
    assert.equal(error.code, code);
    assert.equal(error.status, 403);
    return;
  }
  assert.fail(`expected the API to refuse with ${code}`);
}

async function scenario(client, owner, joiner) {
  const seen = []; // [channelId, content] of every message the bot received, in order
  client.on(Events.MessageCreate, (m) => seen.push([m.channelId, m.content]));

  const guild = client.guilds.cache.get(GUILD_ID);
  assert.ok(guild, 'the bot sees its guild');
  const [general, quiet, secret] = [GENERAL_ID, QUIET_ID, SECRET_ID].map((id) => guild.channels.cache.get(id));
  assert.ok(general && quiet && secret, 'and its channels');
  const me = guild.members.me ?? (await guild.members.fetchMe());
  assert.ok(me.permissions.has('SendMessages') && !me.permissions.has('Administrator'));
  assert.ok(!secret.permissionsFor(me).has('ViewChannel'), 'discord.js computes the overwrite the host enforces');
  step(`ready: ${client.user.tag} in ${guild.name} with ${guild.channels.cache.size} channels and roles ${guild.roles.cache.map((r) => r.name)}`);

  // A person's message, and the bot's reply, edited and deleted.
  const pinged = next(client, Events.MessageCreate, (m) => m.content === '!ping');
  await owner.say(GENERAL_ID, '!ping');
  const [ping] = await pinged;
  assert.equal(ping.guildId, GUILD_ID);
  const reply = await ping.reply('pong');
  assert.equal(reply.content, 'pong');
  assert.equal(reply.author.id, client.user.id);
  await reply.edit('pong (edited)');
  const stored = await owner.call('GET', `/channels/${GENERAL_ID}/messages/${reply.id}`);
  assert.equal(stored.content, 'pong (edited)');
  assert.ok(stored.edited_timestamp);
  await reply.delete();
  await owner.call('GET', `/channels/${GENERAL_ID}/messages/${reply.id}`, undefined, [404]);
  step('message: received, replied, edited, deleted');

  // A reaction, seen by the people and by the bot's own gateway.
  const reacted = next(client, Events.MessageReactionAdd, (r) => r.message.id === ping.id);
  await ping.react('👍');
  const [reaction] = await reacted;
  assert.equal(reaction.emoji.name, '👍');
  const users = await owner.call('GET', `/channels/${GENERAL_ID}/messages/${ping.id}/reactions/%F0%9F%91%8D`);
  assert.deepEqual(users.map((u) => u.id), [client.user.id]);
  step('reaction: added');

  // History: paged with the library's fetch, 100 at a time, newest first.
  const all = [];
  let before;
  for (;;) {
    const page = await general.messages.fetch({ limit: 100, before, cache: false });
    if (page.size === 0) break;
    all.push(...page.values());
    before = page.lastKey();
  }
  const ids = all.map((m) => BigInt(m.id));
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  assert.ok(ids.every((id, i) => i === 0 || ids[i - 1] > id), 'newest first');
  const older = all.filter((m) => m.content.startsWith('history ')).map((m) => m.content).reverse();
  assert.deepEqual(older, Array.from({ length: HISTORY }, (_, i) => `history ${i}`), 'every message, in order');
  const oldest = await general.messages.fetch({ limit: 5, after: '0', cache: false });
  assert.deepEqual([...oldest.values()].map((m) => m.content).sort(), ['history 0', 'history 1', 'history 2', 'history 3', 'history 4']);
  step(`history: ${all.length} messages paged`);

  // A DM from a person, answered.
  const dm = await owner.call('POST', '/users/@me/channels', { recipient_id: client.user.id });
  const whispered = next(client, Events.MessageCreate, (m) => m.content === 'psst');
  await owner.say(dm.id, 'psst');
  const [whisper] = await whispered;
  assert.ok(whisper.channel.isDMBased() && whisper.guildId === null);
  await whisper.channel.send('hush');
  const dmHistory = await owner.call('GET', `/channels/${dm.id}/messages?limit=5`);
  assert.deepEqual(dmHistory.slice(0, 2).map((m) => m.content), ['hush', 'psst']);
  step('dm: received, answered');

  // A member joins.
  const joined = next(client, Events.GuildMemberAdd);
  await joiner.call('POST', `/invites/${ENV.INVITE_CODE}`);
  const [member] = await joined;
  assert.equal(member.id, ENV.JOINER_ID);
  assert.equal(member.guild.id, GUILD_ID);
  step(`member join: ${member.user.username}`);

  // Permissions: no SEND_MESSAGES in #quiet (50013); no VIEW_CHANNEL in #secret (nothing
  // arrives from it, and its history is refused with 50001).
  await expectRefusal(quiet.send('may I?'), 50013);
  const after = next(client, Events.MessageCreate, (m) => m.content === 'after the secret');
  await owner.say(SECRET_ID, 'not for bots');
  await owner.say(GENERAL_ID, 'after the secret');
  await after;
  assert.ok(seen.every(([channel]) => channel !== SECRET_ID), 'nothing from a channel the bot cannot view');
  await expectRefusal(secret.messages.fetch({ limit: 5 }), 50001);
  step('permissions: 50013 to send, nothing seen and 50001 for the hidden channel');

  // The connection drops; people keep talking; RESUME delivers exactly what was missed.
  const resumed = next(client, Events.ShardResume, () => true, 30_000);
  const shard = client.ws._ws.strategy.shards.first();
  shard.connection._socket.destroy(); // the TCP connection, gone without a close frame
  const missed = [0, 1, 2].map((i) => `while away ${i}`);
  for (const content of missed) await owner.say(GENERAL_ID, content);
  await resumed;
  const back = next(client, Events.MessageCreate, (m) => m.content === 'back');
  await owner.say(GENERAL_ID, 'back');
  await back;
  const got = seen.map(([, content]) => content).filter((c) => c.startsWith('while away'));
  assert.deepEqual(got, missed, 'each missed message exactly once, in order');
  step('resume: missed messages delivered once each');
}

const client = new Client({
  intents: [
    GatewayIntentBits.Guilds,
    GatewayIntentBits.GuildMembers,
    GatewayIntentBits.GuildMessages,
    GatewayIntentBits.GuildMessageReactions,
    GatewayIntentBits.DirectMessages,
    GatewayIntentBits.MessageContent,
  ],
  partials: [Partials.Channel],
  rest: { api: API.replace(/\/v10$/, '') },
});
client.on(Events.Debug, (text) => console.error(`[debug] ${text}`));
client.on(Events.Warn, (text) => console.error(`[warn] ${text}`));

const owner = new Person(ENV.OWNER_TOKEN);
const joiner = new Person(ENV.JOINER_TOKEN);
const ready = next(client, Events.ClientReady, () => true, 30_000);
try {
  await client.login(ENV.BOT_TOKEN);
  await ready;
  await scenario(client, owner, joiner);
  step('PASS');
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await client.destroy();
}
