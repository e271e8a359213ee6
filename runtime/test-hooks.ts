/**
 * Hooks into an engine's internals for peerline's own tests, benchmarks and
 * simulator: never exported from an entry point, not public API.
 */
import type { Actor } from 'xstate';
import type { ConnectionMachine } from '../machines/connection-machine.js';
import type { Engine } from './engine.js';

/** Filled in by engine.ts as it loads: a static block of the class is the only code that can read its registry. */
export const engineHooks: { actorOf?: (engine: Engine, peerId: string) => Actor<ConnectionMachine> | undefined } = {};

/** The live actor of a peer's machine, to send it events directly (bench/routing.ts measures routing this way). */
export function actorOf(engine: Engine, peerId: string): Actor<ConnectionMachine> | undefined {
  return engineHooks.actorOf!(engine, peerId);
}
