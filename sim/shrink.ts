/**
 * Shrinking a failing schedule by delta debugging (Zeller's ddmin): cut the
 * schedule after the failing step, then remove ever smaller chunks of steps
 * as long as the run still fails the same invariant. Time spent is bounded.
 */
import type { Schedule, Step } from './schedule.js';
import { simulate, type SimOptions, type SimResult } from './world.js';

export interface ShrinkResult {
  readonly schedule: Schedule;
  readonly result: SimResult;
  readonly runs: number;
  readonly ms: number;
}

export async function shrink(
  failing: SimResult,
  options: SimOptions & { readonly budgetMs?: number; readonly log?: (line: string) => void } = {},
): Promise<ShrinkResult> {
  const started = performance.now();
  const budget = options.budgetMs ?? 60_000;
  const invariant = failing.violation?.invariant;
  if (invariant === undefined) throw new Error('shrink needs a failing run');
  const base = failing.schedule;
  let runs = 0;
  let best: { steps: readonly Step[]; result: SimResult };

  const attempt = async (steps: readonly Step[]): Promise<SimResult | undefined> => {
    runs += 1;
    const result = await simulate({ ...base, steps }, { ...options, keepTrace: false });
    return result.violation?.invariant === invariant ? result : undefined;
  };

  // Everything after the failing step is irrelevant (if the cut run still fails the same way).
  const failedAt = failing.violation!.step;
  const cut = base.steps.filter((s) => s.id <= failedAt);
  const cutResult = cut.length < base.steps.length ? await attempt(cut) : undefined;
  best = cutResult === undefined ? { steps: base.steps, result: failing } : { steps: cut, result: cutResult };

  let n = 2;
  while (best.steps.length >= 2 && performance.now() - started < budget) {
    const size = Math.ceil(best.steps.length / n);
    let reduced = false;
    for (let i = 0; i < n && performance.now() - started < budget; i++) {
      const complement = [...best.steps.slice(0, i * size), ...best.steps.slice((i + 1) * size)];
      if (complement.length === 0) continue;
      const result = await attempt(complement);
      if (result !== undefined) {
        best = { steps: complement, result };
        n = Math.max(n - 1, 2);
        reduced = true;
        options.log?.(`  shrink: ${best.steps.length} steps still fail ${invariant}`);
        break;
      }
    }
    if (!reduced) {
      if (n >= best.steps.length) break;
      n = Math.min(n * 2, best.steps.length);
    }
  }
  return { schedule: { ...base, steps: best.steps }, result: best.result, runs, ms: performance.now() - started };
}
