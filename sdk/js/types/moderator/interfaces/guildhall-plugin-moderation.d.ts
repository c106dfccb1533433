/// <reference path="./guildhall-plugin-types.d.ts" />
declare module 'guildhall:plugin/moderation@0.1.0' {
  export function init(config: string): void;
  export function moderate(candidate: Candidate): Verdict;
  export type Candidate = import('guildhall:plugin/types@0.1.0').Candidate;
  export type Verdict = import('guildhall:plugin/types@0.1.0').Verdict;
}
