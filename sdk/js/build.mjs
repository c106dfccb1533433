#!/usr/bin/env node
// guildhall-js-build: turns an ES module into a Guildhall plugin component with
// componentize-js. Every optional engine feature (stdio, random, clocks, fetch/HTTP) is
// off, so the component imports exactly what its world offers and nothing else; the
// result is checked for that before it is written.
//
//   node sdk/js/build.mjs SRC.js --world bot|moderator|indexer [-o OUT.wasm] [--wit DIR]
//
// Inside: Math.random() and Date.now() are unavailable (they need WASI); use the host's
// `clock.nowMs()` and seed your own generator from it.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    world: { type: 'string', short: 'w' },
    out: { type: 'string', short: 'o' },
    wit: { type: 'string', default: join(here, '..', '..', 'wit') },
  },
});
const [source] = positionals;
const worlds = ['bot', 'moderator', 'indexer'];
if (!source || !worlds.includes(values.world)) {
  console.error('usage: guildhall-js-build SRC.js --world bot|moderator|indexer [-o OUT.wasm] [--wit DIR]');
  process.exit(2);
}
const out = values.out ?? basename(source).replace(/\.m?js$/, '') + '.wasm';

const started = Date.now();
const { component, imports } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(values.wit),
  worldName: values.world,
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
// What the component imports must all be the world's own interfaces: the host refuses
// anything else (and a WASI import would mean an engine feature slipped back in).
const foreign = [...new Set(imports.map(([iface]) => iface))].filter((i) => !i.startsWith('guildhall:plugin/'));
if (foreign.length > 0) {
  console.error(`the component imports interfaces outside the ${values.world} world: ${foreign.join(', ')}`);
  process.exit(1);
}
await writeFile(out, component);
const mib = (component.length / (1 << 20)).toFixed(1);
console.error(`built ${out} (${values.world}, ${mib} MiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(resolve(out));
