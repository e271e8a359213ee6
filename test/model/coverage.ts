/**
 * Transition coverage of the generated model tests.
 *
 *   npx tsx test/model/coverage.ts            # report; exit 1 if a transition is never taken
 *   npx tsx test/model/coverage.ts --paths    # also list the generated paths
 *
 * Builds the plan (paths from `xstate/graph` over the model), drives a real
 * engine along every path, records the transitions the engine's machine
 * takes (from the `inspect` microsteps), and reports, for every transition the
 * machine defines, how often it was taken and by which path first.
 */
import { pathToFileURL } from 'node:url';
import { ModelDriver } from './driver.js';
import { configName, describeStimulus, type ModelState } from './model.js';
import { describePath, plan, replay, type ModelPath, type Plan } from './paths.js';
import { definedTransitions, TransitionRecorder, type DefinedTransition } from './transitions.js';

/** The step that sends an event straight into the machine (the engine never produces it). */
export const INJECTING = 'GHOST_OPENED';

/** Transitions taken only by events sent straight into the machine. */
export function injected(run: CoverageRun): string[] {
  return [...run.recorder.causes].filter(([, causes]) => [...causes].every((c) => c === INJECTING)).map(([key]) => key);
}

export interface PathResult {
  readonly path: ModelPath;
  readonly index: number;
  /** Steps completed and checked. */
  readonly steps: number;
  readonly error: Error | undefined;
}

export interface CoverageRun {
  readonly plan: Plan;
  readonly results: readonly PathResult[];
  readonly recorder: TransitionRecorder;
  readonly defined: readonly DefinedTransition[];
  readonly ms: number;
}

/** Drives the engine along one path; never throws (the error is in the result). */
export async function runPath(path: ModelPath, index: number, recorder: TransitionRecorder): Promise<PathResult> {
  recorder.current = `path ${index + 1}`;
  recorder.cause = 'start';
  let states: ModelState[];
  try {
    states = replay(path.config, path.steps);
  } catch (error) {
    return { path, index, steps: 0, error: error as Error };
  }
  const driver = new ModelDriver(path.config, recorder);
  let steps = 0;
  try {
    await driver.start();
    driver.check(states[0]!, 'start');
    for (const [i, stimulus] of path.steps.entries()) {
      recorder.cause = stimulus.type;
      await driver.step(stimulus, states[i]!, states[i + 1]!);
      steps += 1;
    }
    await driver.finish();
    return { path, index, steps, error: undefined };
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    e.message = `path ${index + 1} ${describePath(path)}\n    failed at step ${steps + 1}${
      steps < path.steps.length ? ` (${describeStimulus(path.steps[steps]!)})` : ' (stop and cleanup)'
    }: ${e.message}`;
    return { path, index, steps, error: e };
  }
}

export async function runCoverage(): Promise<CoverageRun> {
  const started = performance.now();
  const p = plan();
  const recorder = new TransitionRecorder();
  const results: PathResult[] = [];
  for (const [i, path] of p.paths.entries()) results.push(await runPath(path, i, recorder));
  return { plan: p, results, recorder, defined: definedTransitions(), ms: performance.now() - started };
}

export function untaken(run: CoverageRun): DefinedTransition[] {
  return run.defined.filter((t) => (run.recorder.taken.get(t.key) ?? 0) === 0);
}

/** The report: one line per defined transition, then the totals. */
export function report(run: CoverageRun, options: { paths?: boolean } = {}): string {
  const lines: string[] = [];
  const inject = new Set(injected(run));
  const width = Math.max(...run.defined.map((t) => t.key.length));
  lines.push('Transition coverage of the peer connection machine (generated model tests)');
  lines.push('');
  lines.push(`${'transition'.padEnd(width)}  ${'target'.padEnd(22)} ${'guard'.padEnd(26)} taken  first by`);
  for (const t of run.defined) {
    const n = run.recorder.taken.get(t.key) ?? 0;
    const by = run.recorder.firstBy.get(t.key) ?? '';
    const mark = n === 0 ? 'NEVER' : String(n);
    const note = inject.has(t.key) ? ' (event injected: the engine never sends it here)' : '';
    lines.push(`${t.key.padEnd(width)}  ${t.target.padEnd(22)} ${t.guard.padEnd(26)} ${mark.padStart(5)}  ${by}${note}`);
  }
  const taken = run.defined.length - untaken(run).length;
  const failed = run.results.filter((r) => r.error !== undefined);
  lines.push('');
  lines.push(
    `taken ${taken}/${run.defined.length} transitions (${inject.size} of them by injected events only); ` +
      `${run.plan.paths.length} paths, ${run.plan.paths.reduce((n, p) => n + p.steps.length, 0)} steps, ` +
      `${failed.length} failed; model states ${run.plan.states.map((s) => `${s.count} (${configName(s.config)})`).join(', ')}; ` +
      `${Math.round(run.ms)} ms`,
  );
  if (run.plan.unreachable.length > 0) lines.push(`not reachable in the model: ${run.plan.unreachable.join(', ')}`);
  if (options.paths === true) {
    lines.push('');
    for (const r of run.results) lines.push(`${String(r.index + 1).padStart(3)}. ${r.error === undefined ? 'ok  ' : 'FAIL'} ${describePath(r.path)}`);
  }
  for (const r of failed) lines.push('', r.error!.message);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const run = await runCoverage();
  process.stdout.write(`${report(run, { paths: process.argv.includes('--paths') })}\n`);
  const missing = untaken(run);
  const failed = run.results.filter((r) => r.error !== undefined);
  if (missing.length > 0 || failed.length > 0) process.exitCode = 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
