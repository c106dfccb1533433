/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/kv@0.1.0' {
  export function get(key: string): Uint8Array | undefined;
  export function set(key: string, value: Uint8Array): void;
  export { _delete as delete };
  function _delete(key: string): void;
  /**
   * Keys with this prefix, in order.
   */
  export function keys(prefix: string): Array<string>;
  export type HostError = import('guildhall:plugin/types@0.1.0').HostError;
}
