/**
 * Argument checks of the visualizer's entry points: what each one takes that
 * is not a plain option (a machine, its graph, its layout, an engine).
 */
import { checkFunction, checkObject, invalidType } from '../protocol/arguments.js';

/** An XState machine (`createMachine` / `setup().createMachine`). */
export function checkMachine(name: string, value: unknown): void {
  const m = value as { root?: unknown; provide?: unknown } | null;
  if (m === null || typeof m !== 'object' || typeof m.root !== 'object' || typeof m.provide !== 'function') {
    throw invalidType(name, 'an XState machine', value);
  }
}

/** What `machineGraph` returns. */
export function checkGraph(name: string, value: unknown): void {
  const g = value as { machineId?: unknown; states?: unknown; transitions?: unknown } | null;
  if (g === null || typeof g !== 'object' || typeof g.machineId !== 'string' || !Array.isArray(g.states) || !Array.isArray(g.transitions)) {
    throw invalidType(name, 'a machine graph (machineGraph(machine))', value);
  }
}

/** What `layoutMachine` resolves with. */
export function checkLayout(name: string, value: unknown): void {
  const l = value as { width?: unknown; states?: unknown; edges?: unknown; initials?: unknown } | null;
  if (l === null || typeof l !== 'object' || typeof l.width !== 'number' || !Array.isArray(l.states) || !Array.isArray(l.edges) || !Array.isArray(l.initials)) {
    throw invalidType(name, 'a machine layout (await layoutMachine(graph))', value);
  }
}

/** An engine the server can read (`snapshot()`, `metrics()`, `peerId`); peerline's `Engine` fits. */
export function checkEngine(name: string, value: unknown): void {
  checkObject(name, value);
  if (typeof value.peerId !== 'string') throw invalidType(`${name}.peerId`, 'a string', value.peerId);
  checkFunction(`${name}.snapshot`, value.snapshot);
  checkFunction(`${name}.metrics`, value.metrics);
}
