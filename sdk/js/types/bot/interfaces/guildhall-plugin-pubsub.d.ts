/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/pubsub@0.1.0' {
  export function publish(subject: string, payload: Uint8Array): void;
  export type HostError = import('guildhall:plugin/types@0.1.0').HostError;
}
