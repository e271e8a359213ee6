import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The layer rule of docs/ARCHITECTURE.md, checked on the import graph of the
 * shipped sources (every static, side-effect, re-export and dynamic import,
 * type-only ones included):
 *
 * - `protocol/` (floor 0) imports nothing of peerline's but itself;
 * - `machines/` imports xstate and `protocol/`;
 * - each adapter (`adapters/memory`, `adapters/quic`) imports `protocol/`,
 *   its own folder and its own libraries;
 * - `runtime/` imports `machines/`, `protocol/` (the adapter interface is
 *   there) and its libraries, never an adapter;
 * - `visualizer/` imports `protocol/`, `machines/` and the runtime's public
 *   entry point (`runtime/index.ts`);
 * - `bin/` imports the public entry points and `protocol/`, and nothing of
 *   the test, benchmark or simulator trees.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE_FOLDERS = ['protocol', 'machines', 'runtime', 'adapters', 'visualizer', 'bin'];
const NODE = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/** A layer of the source tree, and what it may import. */
interface Layer {
  readonly name: string;
  /** Folders (repository-relative, with a trailing slash) or files its imports may resolve to. */
  readonly internal: readonly string[];
  /** Packages it may import (node's built-in modules always). */
  readonly packages: readonly string[];
}

const PUBLIC_ENTRIES = ['runtime/index.ts', 'machines/', 'adapters/memory/index.ts', 'adapters/quic/index.ts', 'visualizer/'];

const LAYERS: readonly Layer[] = [
  { name: 'protocol/', internal: ['protocol/'], packages: [] },
  { name: 'machines/', internal: ['machines/', 'protocol/'], packages: ['xstate'] },
  { name: 'adapters/memory/', internal: ['adapters/memory/', 'protocol/'], packages: [] },
  { name: 'adapters/quic/', internal: ['adapters/quic/', 'protocol/'], packages: ['@matrixai/quic', '@peculiar/x509', 'reflect-metadata'] },
  { name: 'runtime/', internal: ['runtime/', 'machines/', 'protocol/'], packages: ['xstate', 'rxjs'] },
  { name: 'visualizer/', internal: ['visualizer/', 'machines/', 'protocol/', 'runtime/index.ts'], packages: ['xstate', 'rxjs', 'elkjs', 'ws'] },
  { name: 'bin/', internal: ['bin/', 'protocol/', ...PUBLIC_ENTRIES], packages: [] },
];

/** Every module specifier a source imports (static, side-effect, re-export, dynamic). */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [/\b(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g, /^\s*import\s*['"]([^'"]+)['"]/gm, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const pattern of patterns) for (const match of source.matchAll(pattern)) found.push(match[1]!);
  return found;
}

function layerOf(file: string): Layer | undefined {
  return LAYERS.find((layer) => file.startsWith(layer.name));
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** The layer violations of `files` (repository-relative path -> source text), one line each. */
function violations(files: ReadonlyMap<string, string>): string[] {
  const found: string[] = [];
  for (const [file, source] of files) {
    const layer = layerOf(file);
    if (layer === undefined) continue;
    for (const specifier of specifiers(source)) {
      if (specifier.startsWith('.')) {
        const target = posix.normalize(posix.join(posix.dirname(file), specifier)).replace(/\.js$/, '.ts');
        const allowed = layer.internal.some((place) => (place.endsWith('/') ? target.startsWith(place) : target === place));
        if (!allowed) found.push(`${file} imports ${target} (${layer.name} may import ${layer.internal.join(', ')})`);
      } else if (!NODE.has(specifier) && !layer.packages.includes(packageName(specifier))) {
        found.push(`${file} imports the package ${specifier} (${layer.name} may import ${layer.packages.join(', ') || 'no package'})`);
      }
    }
  }
  return found;
}

function sources(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (folder: string): void => {
    for (const entry of readdirSync(join(ROOT, folder), { withFileTypes: true })) {
      const path = posix.join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) files.set(path, readFileSync(join(ROOT, path), 'utf8'));
    }
  };
  for (const folder of SOURCE_FOLDERS) walk(folder);
  return files;
}

/** Calls of the host's timers (`setTimeout(`, `setInterval(`, `setImmediate(`) that are not a `Clock`'s. */
function hostTimerCalls(source: string): number {
  let calls = 0;
  for (const line of source.split('\n')) {
    const code = line.replace(/\/\/.*$/, '');
    // Comments, and the declaration or definition of a Clock's own method (`setTimeout(fn, ms): unknown`).
    if (/^\s*\*/.test(code) || /^\s*(setTimeout|setInterval|setImmediate)\s*\(.*\)\s*:\s*\w/.test(code)) continue;
    for (const match of code.matchAll(/(^|[^.\w#])(setTimeout|setInterval|setImmediate)\s*\(/g)) if (match) calls += 1;
  }
  return calls;
}

describe('architecture', () => {
  const files = sources();

  it('reads the whole source tree', () => {
    for (const folder of SOURCE_FOLDERS) assert.ok([...files.keys()].some((file) => file.startsWith(`${folder}/`)), folder);
    assert.ok(files.size > 50, `${files.size} files`);
  });

  it('every import keeps to the layer rule', () => {
    assert.deepEqual(violations(files), []);
  });

  it('the check finds a violation in each direction the rule forbids', () => {
    const bad = new Map([
      ['machines/x.ts', "import type { Adapter } from '../adapters/memory/index.js';"],
      ['protocol/x.ts', "export { Engine } from '../runtime/engine.js';"],
      ['adapters/quic/x.ts', "import { connectionMachine } from '../../machines/connection-machine.js';"],
      ['adapters/memory/x.ts', "const quic = await import('../quic/index.js');"],
      ['runtime/x.ts', "import '../adapters/memory/network.js';"],
      ['visualizer/x.ts', "import type { Requests } from '../runtime/requests.js';"],
      ['machines/y.ts', "import { Subject } from 'rxjs';"],
      ['bin/x.ts', "import { hooks } from '../test/fixtures/hooks.js';"],
    ]);
    const found = violations(bad);
    assert.equal(found.length, bad.size, found.join('\n'));
    for (const file of bad.keys()) assert.ok(found.some((line) => line.startsWith(file)), file);
    assert.deepEqual(
      violations(new Map([['adapters/quic/y.ts', "import { errorInfo } from '../../protocol/codes.js';\nimport type { QUICConfig } from '@matrixai/quic';"]])),
      [],
    );
  });

  it('machines, the runtime and the floor call no host timer but through runtime/clock.ts', () => {
    const calls = [...files]
      .filter(([file]) => /^(protocol|machines|runtime)\//.test(file) && file !== 'runtime/clock.ts')
      .filter(([, source]) => hostTimerCalls(source) > 0)
      .map(([file]) => file);
    assert.deepEqual(calls, []);
    assert.equal(hostTimerCalls(files.get('runtime/clock.ts')!), 2, 'systemClock: the one timer and the chain of a long one');
    assert.equal(hostTimerCalls('clock.setTimeout(f, 1); // setTimeout(g)\n * setImmediate(h)\nsetImmediate(k);'), 1);
  });

  it('the memory network runs on its virtual clock: its one host call is flushMicrotasks', () => {
    const calls = [...files].filter(([file, source]) => file.startsWith('adapters/memory/') && hostTimerCalls(source) > 0).map(([file]) => file);
    assert.deepEqual(calls, ['adapters/memory/virtual-clock.ts']);
    assert.equal(hostTimerCalls(files.get('adapters/memory/virtual-clock.ts')!), 1);
  });

  it('the test hook of the engine is no public API', async () => {
    const runtime = await import('../runtime/index.js');
    assert.equal(Object.hasOwn(runtime.Engine, 'actorOf'), false);
    assert.equal('actorOf' in runtime, false);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
    assert.ok(!JSON.stringify(manifest.exports).includes('test-hooks'));
    for (const [file, source] of files) if (file !== 'runtime/engine.ts') assert.ok(!specifiers(source).some((s) => s.endsWith('test-hooks.js')), file);
  });
});
