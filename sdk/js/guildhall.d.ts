/** The configuration the guild owner set; throws a message if it is not a JSON object. */
export function parseConfig(text: string): Record<string, unknown>;
/** What a refused host call says (its `host-error` payload), as text. */
export function hostError(error: unknown): string;
/** A mention of a user, as Discord writes it. */
export function mention(userId: bigint | string): string;
/** xorshift64*: seed it from `clock.nowMs()` (components have no Math.random()). */
export class Random {
  constructor(seed: bigint | number);
  next(): bigint;
  roll(sides: number): number;
}
