// Small helpers for Guildhall plugins written in JavaScript. The host's interfaces
// themselves are imported from the world, e.g.
//   import { send } from 'guildhall:plugin/messages@0.1.0';
// (their TypeScript declarations are in types/bot and types/moderator).
//
// Import this module by its path (componentize-js resolves relative imports):
//   import { parseConfig } from '../sdk/js/guildhall.js';

/**
 * The configuration the guild owner set: a JSON object (`{}` if none). Throws a message
 * (which refuses the configuration) if it is not one.
 */
export function parseConfig(text) {
  let value;
  try {
    value = JSON.parse(text || '{}');
  } catch (e) {
    throw `configuration is not JSON: ${e.message}`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw 'configuration must be a JSON object';
  }
  return value;
}

/**
 * What a refused host call says, as text. Host calls that can fail (`send`, `kv.set`,
 * `timers.set`, ...) throw an error whose `payload` is the WIT `host-error`
 * (`{ tag: 'limited', val: 'writes per minute' }`, `{ tag: 'not-found' }`, ...).
 */
export function hostError(error) {
  const payload = error?.payload ?? error;
  if (payload && typeof payload === 'object' && 'tag' in payload) {
    return payload.val === undefined ? payload.tag : `${payload.tag}: ${payload.val}`;
  }
  return String(error);
}

/** A mention of a user, as Discord writes it. */
export function mention(userId) {
  return `<@${userId}>`;
}

/**
 * A small deterministic generator (xorshift64*), for dice and the like: a component has
 * no `Math.random()` (no WASI randomness), so seed this from `clock.nowMs()`.
 */
export class Random {
  constructor(seed) {
    this.state = BigInt.asUintN(64, BigInt(seed) | 1n);
  }

  /** The next 64 random bits, as a BigInt. */
  next() {
    let x = this.state;
    x ^= x >> 12n;
    x = BigInt.asUintN(64, x ^ (x << 25n));
    x ^= x >> 27n;
    this.state = x;
    return BigInt.asUintN(64, x * 0x2545f4914f6cdd1dn);
  }

  /** A whole number from 1 to `sides`. */
  roll(sides) {
    return Number(this.next() % BigInt(sides)) + 1;
  }
}
