declare module 'guildhall:plugin/text@0.1.0' {
  /**
   * Compiles a set of patterns (at most 64, each at most 512 bytes); the id is this
   * instance's handle for it. An error names the first pattern that does not compile.
   */
  export function compile(patterns: Array<string>): number;
  /**
   * The index of the first pattern of the set that matches `text`, if any.
   */
  export function find(set: number, text: string): number | undefined;
}
