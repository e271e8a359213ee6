/**
 * `npm run build` (and `npm pack`, through `prepack`): compiles the shipped
 * sources (tsconfig.build.json) into dist/ with their declarations, copies the
 * visualizer's page next to its compiled server (which reads it from
 * `./page/` beside itself), and makes the command line executable.
 * dist/ is removed first, so nothing stale is ever packed.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });

// typescript's `exports` hide its bin; its package.json names it.
const require = createRequire(import.meta.url);
const typescript = require.resolve('typescript/package.json');
const tsc = join(dirname(typescript), require(typescript).bin.tsc);
const compiled = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (compiled.status !== 0) {
  process.stderr.write(`build: tsc failed (exit ${compiled.status ?? compiled.signal})\n`);
  process.exit(1);
}

const page = join(root, 'visualizer', 'page');
cpSync(page, join(dist, 'visualizer', 'page'), { recursive: true });

// The command line is run, not imported: its declarations would only be noise in the package.
for (const name of readdirSync(join(dist, 'bin'))) if (name.endsWith('.d.ts')) rmSync(join(dist, 'bin', name));
chmodSync(join(dist, 'bin', 'peerline.js'), 0o755);

process.stdout.write(`build: dist/ (${readdirSync(join(dist, 'visualizer', 'page')).length} page files copied)\n`);
