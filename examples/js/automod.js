// automod, in JavaScript: the twin of plugins/automod (Rust), a moderator with the same
// configuration (all optional):
//   { "banned_words": ["badword"],        whole words, case-insensitive
//     "rewrite_banned_words": false,      true: mask them with * instead of blocking
//     "banned_patterns": ["(?i)free\\s+nitro"],
//     "block_invites": true,              discord.gg/..., guildhall invite links
//     "max_mentions": 5,                  more distinct user mentions than this: blocked
//     "rate_limit": { "messages": 5, "per_seconds": 10 } }
// Rules run in that order; the first that blocks wins. Patterns use Rust `regex` syntax
// and are compiled and matched by the host (the `text` interface), not by JavaScript.
//
// Build: node sdk/js/build.mjs examples/js/automod.js --world moderator -o automod.wasm
import { nowMs } from 'guildhall:plugin/clock@0.1.0';
import { compile, find } from 'guildhall:plugin/text@0.1.0';
import { parseConfig } from '../../sdk/js/guildhall.js';

const MAX_PATTERNS = 64;
const MAX_PATTERN_LEN = 512;
// Users tracked for the rate limit before the oldest are forgotten.
const MAX_TRACKED_USERS = 10000;
const INVITE_PREFIXES = ['discord.gg/', 'discordapp.com/invite/', 'discord.com/invite/', '/api/v10/invites/', 'guildhall.gg/'];

let rules = null;
let patternSet = null;
// author id (as a string) -> times (ms) of their recent messages, oldest first
let recent = new Map();

function strings(config, key) {
  const v = config[key];
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw `${key} must be a list of strings`;
  return v;
}

function fromConfig(config) {
  const bannedWords = strings(config, 'banned_words').map((w) => w.toLowerCase());
  const bannedPatterns = strings(config, 'banned_patterns');
  if (bannedPatterns.length > MAX_PATTERNS || bannedPatterns.some((p) => utf8Length(p) > MAX_PATTERN_LEN)) {
    throw `at most ${MAX_PATTERNS} banned_patterns of at most ${MAX_PATTERN_LEN} bytes`;
  }
  const blockInvites = config.block_invites ?? true;
  if (typeof blockInvites !== 'boolean') throw 'block_invites must be true or false';
  let maxMentions = null;
  if (config.max_mentions !== undefined) {
    if (typeof config.max_mentions !== 'number') throw 'max_mentions must be a number';
    maxMentions = config.max_mentions;
  }
  let rateLimit = null;
  if (config.rate_limit !== undefined) {
    const { messages, per_seconds: perSeconds } = config.rate_limit ?? {};
    if (typeof messages !== 'number') throw 'rate_limit.messages must be a number';
    if (typeof perSeconds !== 'number') throw 'rate_limit.per_seconds must be a number';
    rateLimit = { limit: Math.max(messages, 1), windowMs: Math.max(perSeconds, 1) * 1000 };
  }
  const rewrite = config.rewrite_banned_words === true;
  return { bannedWords, rewrite, bannedPatterns, blockInvites, maxMentions, rateLimit };
}

function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}

function containsInvite(content) {
  const lower = content.toLowerCase();
  return INVITE_PREFIXES.some((prefix) => {
    for (let i = lower.indexOf(prefix); i >= 0; i = lower.indexOf(prefix, i + 1)) {
      if (/[A-Za-z0-9-]/.test(content[i + prefix.length] ?? '')) return true;
    }
    return false;
  });
}

// A letter, a digit or an apostrophe (as Rust's `char::is_alphanumeric`, near enough: the
// engine has no Unicode property classes). Letters are what has a case, or any character
// of the scripts from U+3040 on (kana, CJK, Hangul, ...), which have none.
function isWordChar(ch) {
  return /[0-9A-Za-z']/.test(ch) || (ch > '\u007f' && (ch.toLowerCase() !== ch.toUpperCase() || ch >= '\u3040'));
}

// Replaces banned words (whole words, case-insensitive) with asterisks: [text, hits].
function maskWords(content, banned) {
  if (banned.length === 0) return [content, 0];
  let hits = 0;
  let masked = '';
  let word = '';
  for (const ch of content + ' ') {
    if (isWordChar(ch)) {
      word += ch;
      continue;
    }
    if (word.length > 0 && banned.includes(word.toLowerCase())) {
      hits += 1;
      word = '*'.repeat([...word].length);
    }
    masked += word + ch;
    word = '';
  }
  return [masked.slice(0, -1), hits];
}

/**
 * @typedef {import('guildhall:plugin/types@0.1.0').Verdict} Verdict
 * @typedef {import('guildhall:plugin/types@0.1.0').Candidate} Candidate
 * @param {Candidate} candidate
 * @param {number} now
 * @returns {Verdict}
 */
function check(candidate, now) {
  if (rules.blockInvites && containsInvite(candidate.content)) {
    return { tag: 'block', val: 'invite links are not allowed here' };
  }
  const [masked, hits] = maskWords(candidate.content, rules.bannedWords);
  /** @type {Verdict} */
  let verdict = { tag: 'allow' };
  if (hits > 0) {
    if (!rules.rewrite) return { tag: 'block', val: 'this message contains a banned word' };
    verdict = { tag: 'rewrite', val: masked };
  }
  if (patternSet !== null && find(patternSet, masked) !== undefined) {
    return { tag: 'block', val: 'this message matches a banned pattern' };
  }
  if (rules.maxMentions !== null && candidate.mentions.length > rules.maxMentions) {
    return { tag: 'block', val: `too many mentions (at most ${rules.maxMentions})` };
  }
  if (rules.rateLimit !== null && !candidate.isEdit) {
    const { limit, windowMs } = rules.rateLimit;
    const author = String(candidate.author.id);
    if (recent.size >= MAX_TRACKED_USERS && !recent.has(author)) {
      for (const [user, times] of recent) {
        if (now - times[times.length - 1] >= windowMs) recent.delete(user);
      }
    }
    const times = recent.get(author) ?? [];
    while (times.length > 0 && now - times[0] >= windowMs) times.shift();
    if (times.length >= limit) return { tag: 'block', val: 'you are sending messages too fast' };
    times.push(now);
    recent.set(author, times);
  }
  return verdict;
}

/** @satisfies {typeof import('guildhall:plugin/moderation@0.1.0')} (checked by tsc: tsconfig.*.json) */
export const moderation = {
  init(config) {
    rules = fromConfig(parseConfig(config));
    patternSet = null;
    recent = new Map();
    if (rules.bannedPatterns.length > 0) {
      try {
        patternSet = compile(rules.bannedPatterns);
      } catch (e) {
        throw `banned_patterns: ${e.payload ?? e}`;
      }
    }
  },

  moderate(candidate) {
    return check(candidate, Number(nowMs()));
  },
};
