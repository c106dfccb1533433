// bare-links, in JavaScript: an indexer (the `indexer` world) that files what the default
// indexer (plugins/indexer) files, and derives a tag of its own: links written without a
// scheme ("see example.org/guide") count as links too, so `has=link` and
// `link_hostname=example.org` find them. Installed in a guild, it replaces the default
// there; the guild's existing messages are indexed again with it.
//
// Configuration (optional): { "hosts_ending_in": ["org", "com", ...] }: the endings a bare
// name must have to count as a host (default: a short list of common ones).
//
// Build: node sdk/js/build.mjs examples/js/bare-links.js --world indexer -o bare_links.wasm
import { parseConfig } from '../../sdk/js/guildhall.js';

const DEFAULT_ENDINGS = ['com', 'org', 'net', 'io', 'dev', 'app', 'gg', 'co', 'edu', 'gov'];
const MAX_ENDINGS = 256;

let endings = new Set(DEFAULT_ENDINGS);

/** The hosts of `http(s)://` links, lower-cased, in order (the default indexer's rule). */
function schemeHosts(text) {
  const hosts = [];
  for (const match of text.toLowerCase().matchAll(/https?:\/\/([^\s/?#>)]+)/g)) {
    const host = match[1].split('@').pop().split(':')[0].replace(/\.+$/, '');
    // Letters and digits (any beyond ASCII: the engine has no Unicode property classes), dots, dashes.
    if (host.includes('.') && /^[a-z0-9.\-\u0080-\uffff]+$/.test(host)) hosts.push(host);
  }
  return hosts;
}

/** The hosts of names written without a scheme (`example.org`, `docs.example.org/a`). */
function bareHosts(text) {
  const hosts = [];
  const withoutSchemes = text.toLowerCase().replace(/https?:\/\/\S*/g, ' ');
  for (const match of withoutSchemes.matchAll(/(?:^|[\s(<])((?:[a-z0-9-]+\.)+([a-z]{2,}))(?=$|[\s/?#>).,!:;])/g)) {
    if (endings.has(match[2])) hosts.push(match[1]);
  }
  return hosts;
}

/**
 * @param {import('guildhall:plugin/types@0.1.0').Message} m
 * @returns {import('guildhall:plugin/types@0.1.0').Document}
 */
function document(m) {
  const tags = [m.author.bot ? 'author_type:bot' : 'author_type:user'];
  for (const id of m.mentions) tags.push(`mentions:${id}`);
  const hosts = [...new Set([...schemeHosts(m.content), ...bareHosts(m.content)])];
  if (hosts.length > 0) tags.push('has:link');
  for (const host of hosts) tags.push(`link_hostname:${host}`);
  return {
    id: String(m.id),
    channelId: m.channelId,
    authorId: m.author.id,
    timestamp: m.timestamp,
    text: m.content,
    tags,
  };
}

/** @satisfies {typeof import('guildhall:plugin/indexing@0.1.0')} (checked by tsc: tsconfig.indexer.json) */
export const indexing = {
  init(config) {
    const given = parseConfig(config).hosts_ending_in;
    if (given === undefined) {
      endings = new Set(DEFAULT_ENDINGS);
      return;
    }
    if (!Array.isArray(given) || given.length > MAX_ENDINGS || given.some((e) => typeof e !== 'string')) {
      throw `hosts_ending_in must be a list of at most ${MAX_ENDINGS} strings`;
    }
    endings = new Set(given.map((e) => e.toLowerCase().replace(/^\./, '')));
  },

  index(events) {
    const documents = [];
    for (const event of events) {
      if (event.tag === 'message-create' || event.tag === 'message-update') documents.push(document(event.val));
    }
    return documents;
  },
};
