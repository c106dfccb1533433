#!/usr/bin/env node
// Generates the TypeScript declarations in types/ from the WIT package in wit/ with jco
// (the bindings a plugin imports: `guildhall:plugin/messages@0.1.0`, ...).
//   node gen-types.mjs           write them
//   node gen-types.mjs --check   exit 1 if the committed ones are not what the WIT gives
import { $init, generateTypes } from '@bytecodealliance/jco-transpile/component';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wit = join(here, '..', '..', 'wit');
const check = process.argv.includes('--check');
await $init;

// The package's files as one source text (one `package` line): jco reads WIT from a
// string here rather than through its sandboxed file system.
const files = readdirSync(wit).filter((f) => f.endsWith('.wit')).sort();
const source = files
  .map((f, i) => {
    const text = readFileSync(join(wit, f), 'utf8');
    return i === 0 ? text : text.replace(/^package [^;]+;/m, '');
  })
  .join('\n');

const stale = [];
if (!check) rmSync(join(here, 'types'), { recursive: true, force: true });
for (const world of ['bot', 'moderator', 'indexer']) {
  const generated = generateTypes(world, {
    wit: { tag: 'source', val: source },
    world,
    guest: true,
    tlaCompat: false,
    features: { tag: 'list', val: [] },
  });
  for (const [name, bytes] of generated) {
    const text = Buffer.from(bytes).toString('utf8');
    const path = join(here, 'types', world, name);
    if (check) {
      let committed = null;
      try {
        committed = readFileSync(path, 'utf8');
      } catch {}
      if (committed !== text) stale.push(path);
    } else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
    }
  }
}
if (stale.length > 0) {
  console.error(`out of date (run: node sdk/js/gen-types.mjs):\n  ${stale.join('\n  ')}`);
  process.exit(1);
}
