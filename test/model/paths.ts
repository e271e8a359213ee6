/**
 * Path generation with `xstate/graph`: the timed model of `model.ts` is walked
 * breadth first (`getAdjacencyMap`), shortest paths to every abstract state
 * come from `getShortestPaths`, and for every transition the machine defines
 * the shortest path ending in a step that takes it is kept. Paths that only
 * repeat what longer kept paths already take are dropped.
 */
import { getAdjacencyMap, getShortestPaths, type AdjacencyMap, type TraversalOptions } from 'xstate/graph';
import type { ActorLogic, EventObject, Snapshot } from 'xstate';
import {
  configName,
  describeStimulus,
  initialState,
  keyOf,
  stimuli,
  transition,
  type ModelConfig,
  type ModelState,
  type Stimulus,
} from './model.js';
import { definedTransitions } from './transitions.js';

/** The model configurations the generated tests cover. */
export const CONFIGS: readonly ModelConfig[] = [
  { pinned: false, remoteLower: true, crowded: true },
  { pinned: false, remoteLower: false, crowded: false },
  { pinned: true, remoteLower: true, crowded: false },
];

export interface ModelPath {
  readonly config: ModelConfig;
  readonly steps: readonly Stimulus[];
  /** Transitions this path was chosen for (taken by no longer path kept before it). */
  readonly covers: readonly string[];
  /** Every transition the model takes along it. */
  readonly takes: readonly string[];
}

export interface Plan {
  readonly paths: readonly ModelPath[];
  /** Abstract states reached per configuration. */
  readonly states: ReadonlyArray<{ readonly config: ModelConfig; readonly count: number }>;
  /** Defined transitions no model step takes (the model cannot drive them). */
  readonly unreachable: readonly string[];
}

type Logic = ActorLogic<Snapshot<unknown>, EventObject, unknown>;

function logicOf(config: ModelConfig): Logic {
  return {
    config: undefined,
    transition: (state: unknown, event: unknown) => transition(state as ModelState, event as Stimulus),
    getInitialSnapshot: () => initialOf(config),
    getPersistedSnapshot: (state: unknown) => state,
  } as unknown as Logic;
}

function options(config: ModelConfig): TraversalOptions<Snapshot<unknown>, EventObject, unknown> {
  return {
    fromState: initialOf(config) as unknown as Snapshot<unknown>,
    serializeState: (state) => keyOf(state as unknown as ModelState),
    events: (state) => stimuli(state as unknown as ModelState) as unknown as EventObject[],
  };
}

const initials = new Map<string, ModelState>();

/**
 * Lets go of every model state explored so far. Each state keeps the states
 * it led to (the memo of `transition`), so the initial states held here keep
 * the whole explored graph alive: about 540 MB after the generated paths.
 * Call it when a suite is done with the model.
 */
export function forgetModelStates(): void {
  initials.clear();
}

/** One initial state object per configuration, so both walks and every replay share their steps. */
function initialOf(config: ModelConfig): ModelState {
  const key = JSON.stringify(config);
  let state = initials.get(key);
  if (state === undefined) {
    state = initialState(config);
    initials.set(key, state);
  }
  return state;
}

/** Replays `steps` on the model, checking that each one is offered where it is taken. */
export function replay(config: ModelConfig, steps: readonly Stimulus[]): ModelState[] {
  let state = initialOf(config);
  const states = [state];
  for (const step of steps) {
    const offered = stimuli(state, { maxDepth: Infinity, rebirth: true }).map((s) => JSON.stringify(s));
    if (!offered.includes(JSON.stringify(step))) {
      throw new Error(`model replay: ${describeStimulus(step)} is not offered after ${states.length - 1} steps`);
    }
    state = transition(state, step);
    states.push(state);
  }
  return states;
}

export function describePath(path: ModelPath): string {
  return `[${configName(path.config)}] ${path.steps.map(describeStimulus).join(' > ')}`;
}

/** Builds the plan: a small set of paths that together take every transition the model can take. */
export function plan(configs: readonly ModelConfig[] = CONFIGS): Plan {
  const best = new Map<string, { config: ModelConfig; steps: Stimulus[] }>();
  const states: Array<{ config: ModelConfig; count: number }> = [];
  for (const config of configs) {
    const logic = logicOf(config);
    const opts = options(config);
    const adjacency = getAdjacencyMap(logic, opts) as unknown as AdjacencyMap<ModelState, Stimulus>;
    const shortest = new Map<string, Stimulus[]>();
    for (const path of getShortestPaths(logic, opts)) {
      const key = keyOf(path.state as unknown as ModelState);
      shortest.set(key, path.steps.slice(1).map((s) => s.event as unknown as Stimulus));
    }
    states.push({ config, count: Object.keys(adjacency).length });
    for (const [key, value] of Object.entries(adjacency)) {
      const prefix = shortest.get(key);
      if (prefix === undefined) continue;
      const edges = Object.values(value.transitions) as Array<{ event: Stimulus; state: ModelState }>;
      for (const edge of edges) {
        const took = edge.state.took;
        for (const t of took) {
          const length = prefix.length + 1;
          const known = best.get(t);
          if (known === undefined || known.steps.length > length) best.set(t, { config, steps: [...prefix, edge.event] });
        }
      }
    }
  }
  // Longest first: a long path often takes what several short ones would.
  const candidates = [...best.values()].sort((a, b) => b.steps.length - a.steps.length);
  const covered = new Set<string>();
  const paths: ModelPath[] = [];
  for (const candidate of candidates) {
    const run = replay(candidate.config, candidate.steps);
    const takes = [...new Set(run.flatMap((s) => s.took))];
    const fresh = takes.filter((t) => !covered.has(t));
    if (fresh.length === 0) continue;
    for (const t of takes) covered.add(t);
    paths.push({ config: candidate.config, steps: candidate.steps, covers: fresh, takes });
  }
  // Shortest first when running: early failures are the simplest to read.
  paths.sort((a, b) => a.steps.length - b.steps.length);
  const unreachable = definedTransitions()
    .map((t) => t.key)
    .filter((k) => !covered.has(k));
  return { paths, states, unreachable };
}
