/**
 * A swarm of agents, on the wall clock, opening echo streams to each other
 * while a chaos schedule drains, force closes and partitions connections:
 * something live to watch in the inspector (`peerline inspect`), and the
 * page's test bed. The network is handed in (the in-memory one fits:
 * `new MemoryNetwork({ clock: systemClock })`), so the visualizer depends on
 * the runtime's public API only.
 *
 * Agents have names (alice, bob, ...) and peer ids shaped like QUIC ones (52
 * base32 characters), so the page shows what a real swarm looks like.
 */
import { createEngine, echo, seededRandom, sendAndReceive, type Adapter, type Engine, type EngineInit, type Random } from '../runtime/index.js';
import '../protocol/dispose.js';
import {
  checkFunction,
  checkNumber,
  checkObject,
  checkOptionalNumber,
  checkString,
  invalidType,
  NON_NEGATIVE,
  PORT,
} from '../protocol/arguments.js';
import { createInspector, Inspector } from './inspector.js';
import { startVisualizer, type Visualizer } from './server.js';

/** What the swarm needs of a network; `MemoryNetwork` has it all. */
export interface SwarmNetwork {
  /** The adapter of the agent named `peerId`. */
  node(peerId: string): Adapter;
  /** The address other agents dial to reach `peerId`. */
  address(peerId: string): string;
  /** Optional faults for the chaos schedule. */
  partition?(a: readonly string[], b: readonly string[]): void;
  heal?(): void;
}

export interface LiveSwarmOptions {
  /** Where the agents live; its timers must run on the wall clock. */
  readonly network: SwarmNetwork;
  /** Agents in the swarm; each may connect to every other, so up to n*(n-1) peer machines. @default 8 */
  readonly agents?: number;
  /** Machines are created with this inspector's `inspect`. @default a new one */
  readonly inspector?: Inspector;
  /** One request (a random agent to a random other) every this many ms. 0: no traffic. @default 100 */
  readonly requestIntervalMs?: number;
  /** A chaos action (drain, force close, partition + heal) every this many ms. 0: none. @default 4000 */
  readonly chaosIntervalMs?: number;
  readonly seed?: number;
  /** Engine options for every agent (over the swarm's lively defaults). */
  readonly engine?: EngineInit;
  /** Pairs of agent names (`alice/bob`) the random traffic leaves alone, for tests that drive them by hand. */
  readonly quiet?: readonly string[];
}

export interface LiveSwarm {
  readonly network: SwarmNetwork;
  readonly engines: readonly Engine[];
  readonly inspector: Inspector;
  /** The agents' names, in order (`agentNames(agents)`). */
  readonly names: readonly string[];
  /** Display names by peer id, as `startVisualizer({ names })` takes them. */
  readonly displayNames: Readonly<Record<string, string>>;
  /** The peer id of the agent `name`. */
  peerId(name: string): string;
  /** The engine of the agent with this name or peer id. */
  engine(agent: string): Engine;
  /** Requests answered so far, by outcome (`ok` or an error code). */
  outcomes(): Readonly<Record<string, number>>;
  /** Stops the traffic and every engine (forced: bounded by the force-close grace). */
  stop(): Promise<void>;
  /** `await using swarm = await startLiveSwarm(...)`: stop() at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

function checkSwarmOptions(options: LiveSwarmOptions): void {
  checkObject('options', options);
  checkObject('options.network', options.network);
  checkFunction('options.network.node', options.network.node);
  checkFunction('options.network.address', options.network.address);
  checkOptionalNumber('options.agents', options.agents, { min: 2, integer: true });
  if (options.inspector !== undefined && !(options.inspector instanceof Inspector)) {
    throw invalidType('options.inspector', 'an Inspector (createInspector())', options.inspector);
  }
  checkOptionalNumber('options.requestIntervalMs', options.requestIntervalMs, NON_NEGATIVE);
  checkOptionalNumber('options.chaosIntervalMs', options.chaosIntervalMs, NON_NEGATIVE);
  checkOptionalNumber('options.seed', options.seed, { integer: true });
  if (options.engine !== undefined) checkObject('options.engine', options.engine);
  if (options.quiet !== undefined) {
    if (!Array.isArray(options.quiet)) throw invalidType('options.quiet', 'an array of "from/to" pairs', options.quiet);
    options.quiet.forEach((pair, i) => checkString(`options.quiet[${i}]`, pair));
  }
}

const PROTOCOL = '/inspect-demo/echo/1';

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'niaj', 'olivia', 'peggy', 'rupert', 'sybil', 'trent', 'victor', 'walter', 'yvonne'];

/** Names for `count` agents: alice, bob, carol, ... then `agent-21`, `agent-22`, .... */
export function agentNames(count: number): string[] {
  checkNumber('count', count, { min: 0, integer: true });
  return Array.from({ length: count }, (_, i) => NAMES[i] ?? `agent-${i + 1}`);
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** A peer id of the QUIC adapter's shape: 32 random bytes in lower-case base32, 52 characters. */
function keyLikeId(random: Random): string {
  // 256 bits are 51 full characters and one holding the last bit (then four zero bits).
  const head = Array.from({ length: 51 }, () => BASE32[Math.floor(random() * 32)]).join('');
  return head + (random() < 0.5 ? 'a' : 'q');
}

function pick<T>(items: readonly T[], random: Random): T {
  return items[Math.floor(random() * items.length)]!;
}

export async function startLiveSwarm(options: LiveSwarmOptions): Promise<LiveSwarm> {
  checkSwarmOptions(options);
  const count = options.agents ?? 8;
  const inspector = options.inspector ?? createInspector();
  const random = seededRandom(options.seed ?? 7);
  const network = options.network;
  const names = agentNames(count);
  const idRandom = seededRandom((options.seed ?? 7) + 1);
  const ids = new Map(names.map((name) => [name, keyLikeId(idRandom)]));
  const id = (name: string): string => ids.get(name)!;
  const quiet = new Set(options.quiet ?? []);
  const engines = new Map<string, Engine>();
  const outcomes: Record<string, number> = {};
  const count1 = (key: string): void => {
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  };

  for (const name of names) {
    const engine = createEngine({
      adapter: network.node(id(name)),
      random,
      inspect: inspector.inspect,
      trace: false,
      logger: { trace: () => {}, warn: () => {} },
      heartbeat: { intervalMs: 1500, timeoutMs: 600, misses: 2 },
      idleTimeoutMs: 8000,
      connectTimeoutMs: 2000,
      handshakeTimeoutMs: 2000,
      streamOpenTimeoutMs: 2000,
      drainDeadlineMs: 1500,
      forceCloseGraceMs: 300,
      ...options.engine,
    });
    engine.handle(PROTOCOL, echo);
    for (const other of names) if (other !== name) engine.addPeer(id(other), [network.address(id(other))]);
    engines.set(name, engine);
  }
  await Promise.all([...engines.values()].map((e) => e.start()));

  const request = (from: string, to: string): void => {
    const engine = engines.get(from);
    if (engine === undefined || engine.status !== 'running') return;
    engine
      .openStream(id(to), PROTOCOL, { timeoutMs: 3000 })
      .then(async (stream) => {
        await sendAndReceive(stream, `hello from ${from}`);
        count1('ok');
      })
      .catch((error: unknown) => count1(error !== null && typeof error === 'object' && 'code' in error ? String(error.code) : 'STREAM_ERROR'));
  };

  const timers: ReturnType<typeof setInterval>[] = [];
  const every = (ms: number, fn: () => void): void => {
    if (ms <= 0) return;
    const timer = setInterval(fn, ms);
    timer.unref();
    timers.push(timer);
  };
  every(options.requestIntervalMs ?? 100, () => {
    const from = pick(names, random);
    let to = pick(names, random);
    if (to === from) to = names[(names.indexOf(from) + 1) % names.length]!;
    if (quiet.has(`${from}/${to}`) || quiet.has(`${to}/${from}`)) return;
    request(from, to);
  });
  let healTimer: ReturnType<typeof setTimeout> | undefined;
  every(options.chaosIntervalMs ?? 4000, () => {
    const a = pick(names, random);
    let b = pick(names, random);
    if (a === b) b = names[(names.indexOf(a) + 1) % names.length]!;
    if (quiet.has(`${a}/${b}`) || quiet.has(`${b}/${a}`)) return;
    const roll = random();
    const engine = engines.get(a)!;
    if (roll < 0.4) void engine.drain(id(b));
    else if (roll < 0.7) void engine.forceClose(id(b), 'chaos');
    else if (healTimer === undefined && network.partition !== undefined && network.heal !== undefined) {
      network.partition([id(a)], [id(b)]);
      healTimer = setTimeout(() => {
        healTimer = undefined;
        network.heal?.();
      }, 2500);
      healTimer.unref();
    }
  });

  let stopping: Promise<void> | undefined;
  const swarm: LiveSwarm = {
    network,
    engines: [...engines.values()],
    inspector,
    names,
    displayNames: Object.fromEntries(names.map((name) => [id(name), name])),
    peerId(name) {
      checkString('name', name);
      const peerId = ids.get(name);
      if (peerId === undefined) throw new RangeError(`no agent named ${name}`);
      return peerId;
    },
    engine(agent) {
      checkString('agent', agent);
      const engine = engines.get(agent) ?? [...engines.values()].find((e) => e.peerId === agent);
      if (engine === undefined) throw new RangeError(`no agent ${agent}`);
      return engine;
    },
    outcomes: () => ({ ...outcomes }),
    stop() {
      stopping ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        if (healTimer !== undefined) clearTimeout(healTimer);
        await Promise.all([...engines.values()].map((e) => e.stop({ force: true })));
      })();
      return stopping;
    },
    [Symbol.asyncDispose]: () => swarm.stop(),
  };
  return swarm;
}

export interface InspectDemoOptions extends LiveSwarmOptions {
  /** @default 0 (any free port) */
  readonly port?: number;
  readonly host?: string;
}

/**
 * A live swarm and the inspector page watching it: what `peerline inspect` runs.
 *
 * @example
 * const demo = await runInspectDemo({ network: new MemoryNetwork({ clock: systemClock, latencyMs: 2 }), agents: 8, port: 4800 });
 * console.log(`inspector at ${demo.url}`);
 */
export async function runInspectDemo(options: InspectDemoOptions): Promise<{ url: string; swarm: LiveSwarm; visualizer: Visualizer; close(): Promise<void> }> {
  // Checked before any agent starts: a bad port must not leave a swarm running.
  checkSwarmOptions(options);
  if (options.port !== undefined) checkNumber('options.port', options.port, PORT);
  if (options.host !== undefined) checkString('options.host', options.host);
  const inspector = options.inspector ?? createInspector();
  const swarm = await startLiveSwarm({ ...options, inspector });
  let visualizer: Visualizer;
  try {
    visualizer = await startVisualizer({
      inspector,
      engines: swarm.engines,
      names: swarm.displayNames,
      title: `peerline inspector: ${swarm.engines.length} agents`,
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.host === undefined ? {} : { host: options.host }),
    });
  } catch (error) {
    await swarm.stop();
    throw error;
  }
  return {
    url: visualizer.url,
    swarm,
    visualizer,
    close: async () => {
      await visualizer.close();
      await swarm.stop();
    },
  };
}
