/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/timers@0.1.0' {
  /**
   * Returns the timer's id.
   */
  export function set(delayMs: bigint, payload: string): bigint;
  export function cancel(id: bigint): void;
  export type HostError = import('guildhall:plugin/types@0.1.0').HostError;
}
