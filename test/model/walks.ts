/**
 * Seeded random walks over the model: longer and more varied than the
 * generated shortest paths (several requests, reconnects, faults in a row),
 * driven on the engine and checked against the model after every step the
 * same way.
 */
import { seededRandom } from '../../runtime/index.js';
import { runPath, type PathResult } from './coverage.js';
import { initialState, stimuli, transition, type Stimulus } from './model.js';
import { CONFIGS, type ModelPath } from './paths.js';
import { TransitionRecorder } from './transitions.js';

export interface WalkOptions {
  readonly count: number;
  readonly length: number;
  readonly seed: number;
}

/** Steps that end the machine's life are picked less often, so walks live longer. */
const WEIGHTS: Partial<Record<Stimulus['type'], number>> = {
  STOP: 0.1,
  DRAIN: 0.3,
  FORCE_CLOSE: 0.3,
  DROP: 0.5,
  GHOST_OPENED: 0.2,
  LOSE_CLOSE: 0.2,
  TIMER: 2,
  REQ: 2,
};

function choose(offered: readonly Stimulus[], random: () => number): Stimulus {
  const weights = offered.map((s) => WEIGHTS[s.type] ?? 1);
  let r = random() * weights.reduce((a, b) => a + b, 0);
  for (const [i, w] of weights.entries()) {
    r -= w;
    if (r < 0) return offered[i]!;
  }
  return offered[offered.length - 1]!;
}

/** One walk: a path of up to `length` stimuli, each picked at random among those the model offers. */
export function walk(seed: number, length: number): ModelPath {
  const random = seededRandom(seed);
  const config = CONFIGS[seed % CONFIGS.length]!;
  let state = initialState(config);
  const steps: Stimulus[] = [];
  for (let i = 0; i < length; i++) {
    const offered = stimuli(state, { maxDepth: Infinity, rebirth: true });
    if (offered.length === 0) break;
    const pick = choose(offered, random);
    steps.push(pick);
    state = transition(state, pick);
  }
  return { config, steps, covers: [], takes: [] };
}

export async function walks(options: WalkOptions, recorder = new TransitionRecorder()): Promise<PathResult[]> {
  const results: PathResult[] = [];
  for (let i = 0; i < options.count; i++) {
    const path = walk(options.seed + i, options.length);
    const result = await runPath(path, i, recorder);
    results.push(result.error === undefined ? result : { ...result, error: Object.assign(result.error, { message: `walk seed ${options.seed + i}: ${result.error.message}` }) });
  }
  return results;
}
