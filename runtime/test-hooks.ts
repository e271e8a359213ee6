/**
 * Hooks into an engine's internals for peerline's own tests, benchmarks and
 * simulator: never exported from an entry point, not public API.
 */
import type { Actor } from 'xstate';
import type { ConnectionMachine } from '../machines/connection-machine.js';
import type { Engine } from './engine.js';
import type { HeartbeatView } from './heartbeat.js';

/** Filled in by engine.ts as it loads: a static block of the class is the only code that can read its registry. */
export const engineHooks: {
  actorOf?: (engine: Engine, peerId: string) => Actor<ConnectionMachine> | undefined;
  heartbeatOf?: (engine: Engine, peerId: string) => (HeartbeatView & { readonly armedAt: number }) | undefined;
} = {};

/** The live actor of a peer's machine, to send it events directly (bench/routing.ts measures routing this way). */
export function actorOf(engine: Engine, peerId: string): Actor<ConnectionMachine> | undefined {
  return engineHooks.actorOf!(engine, peerId);
}

/** What the heartbeat of a `ready` peer is doing (undefined when it has none), and when the engine's one heartbeat timer fires. */
export function heartbeatOf(engine: Engine, peerId: string): (HeartbeatView & { readonly armedAt: number }) | undefined {
  return engineHooks.heartbeatOf!(engine, peerId);
}
