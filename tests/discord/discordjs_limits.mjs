// discord.js against the host's rate limits: the twin of discordpy_limits.py (see there).
// discord.js's REST manager (client.rest, what every discord.js call goes through) reads the
// X-RateLimit-* headers and queues instead of being refused, and waits out a global 429
// (X-RateLimit-Global, Retry-After) it could not foresee. It reports each 429 it met with
// its `rateLimited` event.
//
// Prints the count of 429s the library met, and PASS; any failure exits with status 1.

import assert from 'node:assert/strict';
import { Client, Routes } from 'discord.js';

const ENV = process.env;
const CHANNEL = ENV.CHANNEL_ID;
const BURST = Number(ENV.BURST);
const SENDS = Number(ENV.SENDS);

const client = new Client({ intents: [], rest: { api: ENV.GUILDHALL_API.replace(/\/v10$/, '') } });
client.rest.setToken(ENV.TOKEN);
let seen = 0;
client.rest.on('rateLimited', (info) => {
  seen += 1;
  console.log(`library: rate limited (global ${info.global}, retry after ${info.retryAfter} ms, ${info.route})`);
});

try {
  const channels = await Promise.all(Array.from({ length: BURST }, () => client.rest.get(Routes.channel(CHANNEL))));
  assert.ok(channels.every((c) => c.id === CHANNEL));
  console.log(`burst of ${BURST} reads done; 429s met so far: ${seen}`);
  assert.ok(seen >= 1, 'the burst never met the global limit');

  const send = (content) => client.rest.post(Routes.channelMessages(CHANNEL), { body: { content } });
  const started = performance.now();
  for (let i = 0; i < SENDS; i++) await send(`sequential ${i}`);
  const sequential = (performance.now() - started) / 1000;
  console.log(`${SENDS} sequential sends took ${sequential.toFixed(2)}s`);
  await Promise.all(Array.from({ length: SENDS }, (_, i) => send(`concurrent ${i}`)));

  const history = await client.rest.get(Routes.channelMessages(CHANNEL), { query: new URLSearchParams({ limit: '100' }) });
  const contents = history.map((m) => m.content);
  const want = [...Array(SENDS).keys()].flatMap((i) => [`sequential ${i}`, `concurrent ${i}`]);
  assert.deepEqual([...contents].sort(), [...want].sort(), 'each message once');
  const ordered = contents.filter((c) => c.startsWith('sequential')).reverse();
  assert.deepEqual(ordered, [...Array(SENDS).keys()].map((i) => `sequential ${i}`));
  console.log(`SEQUENTIAL_SECONDS ${sequential.toFixed(3)}`);
  console.log(`LIBRARY_429S ${seen}`);
  console.log('PASS');
} finally {
  client.destroy();
}
