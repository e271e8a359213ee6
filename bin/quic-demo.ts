/**
 * The demo swarm over real QUIC on 127.0.0.1: N agents, each with its own
 * Ed25519 identity and UDP socket, open echo streams to each other on the
 * wall clock while a chaos schedule drains a connection, partitions two
 * agents (their traffic runs through small UDP relays that can go silent),
 * and stops and restarts an agent (a new engine and adapter, same identity).
 * The inspector page watches the whole swarm; a progress line shows it in the
 * terminal; a report closes the run.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createQuicAdapter, generateIdentity, quicAddress, type QuicAdapter, type QuicIdentity } from '../adapters/quic/index.js';
import { createEngine, echo, seededRandom, sendAndReceive, type Engine, type EngineInit, type Random } from '../runtime/index.js';
import { createInspector, startVisualizer, type Visualizer } from '../visualizer/index.js';
import { formatReport, type DemoReport } from './demo.js';

export interface QuicDemoOptions {
  peers: number;
  /** Wall-clock seconds to run. */
  durationS: number;
  seed: number;
  chaos: boolean;
  /** Port of the inspector page; 0 picks a free one. */
  port: number;
  /** Chaos steps and other notable lines. */
  out: (line: string) => void;
  /** The progress line, once a second. */
  progress?: (line: string) => void;
  /** Called once the inspector page is served. */
  onServing?: (url: string) => void;
  /** Ends the run early (Ctrl-C); it still shuts down cleanly. */
  signal?: AbortSignal;
}

export interface QuicDemoReport extends DemoReport {
  /** The inspector page that was served. */
  url: string;
  /** Warnings the engines and adapters logged. */
  warnings: number;
  /** Anything still open after shutdown (should be empty). */
  leftover: string[];
  /** True when the run was cut short by the signal. */
  interrupted: boolean;
}

const PROTOCOL = '/demo/echo/1';
const HOST = '127.0.0.1';
const REQUEST_INTERVAL_MS = 100;
const REQUEST_TIMEOUT_MS = 3000;

/** Lively timings: heartbeats every second, timeouts of about two. */
const ENGINE_TIMINGS: EngineInit = {
  heartbeat: { intervalMs: 1000, timeoutMs: 500, misses: 2 },
  idleTimeoutMs: 10_000,
  connectTimeoutMs: 2000,
  handshakeTimeoutMs: 2000,
  streamOpenTimeoutMs: 2000,
  drainDeadlineMs: 1500,
  forceCloseGraceMs: 300,
  retry: { strategy: 'exponential', initialDelayMs: 300, maxAttempts: 3 },
};

/**
 * A UDP relay on 127.0.0.1 in front of one agent: clients send to `port`,
 * each client gets its own upstream socket, replies find their way back.
 * `blocked` drops everything both ways (a partition) until cleared.
 */
class Relay {
  blocked = false;
  readonly #front: Socket;
  readonly #targetPort: number;
  readonly #upstreams = new Map<string, Socket>();
  #closed = false;

  private constructor(front: Socket, targetPort: number) {
    this.#front = front;
    this.#targetPort = targetPort;
    front.on('message', (data, from) => this.#fromClient(data, from));
  }

  static async open(targetPort: number): Promise<Relay> {
    const front = createSocket('udp4');
    front.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      front.once('error', reject);
      front.bind(0, HOST, () => {
        front.off('error', reject);
        resolve();
      });
    });
    return new Relay(front, targetPort);
  }

  get port(): number {
    return this.#front.address().port;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const sockets = [this.#front, ...this.#upstreams.values()];
    this.#upstreams.clear();
    await Promise.all(sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
  }

  #fromClient(data: Buffer, from: RemoteInfo): void {
    const key = `${from.address}:${from.port}`;
    let upstream = this.#upstreams.get(key);
    if (upstream === undefined) {
      upstream = createSocket('udp4');
      upstream.on('error', () => {});
      upstream.on('message', (reply) => this.#send(this.#front, reply, from.port, from.address));
      upstream.bind(0, HOST);
      this.#upstreams.set(key, upstream);
    }
    this.#send(upstream, data, this.#targetPort, HOST);
  }

  #send(socket: Socket, data: Buffer, port: number, address: string): void {
    if (this.#closed || this.blocked) return;
    try {
      socket.send(data, port, address);
    } catch {
      // The socket closed meanwhile: the datagram is lost, as on a network.
    }
  }
}

function pick<T>(items: readonly T[], random: Random): T {
  return items[Math.floor(random() * items.length)]!;
}

interface Agent {
  readonly name: string;
  readonly identity: QuicIdentity;
  engine: Engine | undefined;
  adapter: QuicAdapter | undefined;
  port: number;
}

export async function runQuicDemo(options: QuicDemoOptions): Promise<QuicDemoReport> {
  if (!Number.isInteger(options.peers) || options.peers < 2) throw new RangeError(`peers must be a whole number >= 2, got ${options.peers}`);
  const { out } = options;
  const random = seededRandom(options.seed);
  const report: QuicDemoReport = {
    requests: { ok: 0, failed: 0, byCode: {}, unanswered: 0 },
    transitions: 0,
    retries: 0,
    crashes: 0,
    chaos: [],
    url: '',
    warnings: 0,
    leftover: [],
    interrupted: false,
  };
  let crashes = 0;
  const onCrash = (): void => {
    crashes += 1;
  };
  process.on('unhandledRejection', onCrash);
  process.on('uncaughtException', onCrash);
  const logger = { trace: () => {}, warn: () => void (report.warnings += 1) };

  const inspector = createInspector();
  const names = Array.from({ length: options.peers }, (_, i) => `agent-${i + 1}`);
  const agents = new Map<string, Agent>();
  for (const name of names) agents.set(name, { name, identity: await generateIdentity(), engine: undefined, adapter: undefined, port: 0 });
  const agentOf = (name: string): Agent => agents.get(name)!;
  const retired: Engine[] = [];
  const adapters: QuicAdapter[] = [];
  const relays: Relay[] = [];
  let visualizer: Visualizer | undefined;
  /** Addresses other than the agent's own socket: `from/to` -> address. */
  const routes = new Map<string, string>();
  const addressOf = (from: string, to: string): string => routes.get(`${from}/${to}`) ?? quicAddress(agentOf(to).port);

  const startAgent = async (name: string): Promise<void> => {
    const agent = agentOf(name);
    const open = async (port: number): Promise<{ adapter: QuicAdapter; engine: Engine }> => {
      const adapter = createQuicAdapter({ identity: agent.identity, host: HOST, port, logger });
      const engine = createEngine({ adapter, logger, trace: false, inspect: inspector.inspect, random, ...ENGINE_TIMINGS });
      adapters.push(adapter);
      await engine.start();
      return { adapter, engine };
    };
    let started: { adapter: QuicAdapter; engine: Engine };
    try {
      // A restart takes the same port, so the others find it where it was.
      started = await open(agent.port);
    } catch (error) {
      if (agent.port === 0) throw error;
      started = await open(0);
    }
    const { adapter, engine } = started;
    engine.handle(PROTOCOL, echo);
    engine.transitions$.subscribe(() => {
      report.transitions += 1;
    });
    const moved = agent.port !== 0 && agent.port !== adapter.port;
    agent.port = adapter.port;
    agent.adapter = adapter;
    agent.engine = engine;
    visualizer?.addEngine(engine);
    // Before every agent has a port (at the start), `introduceAll` does this.
    for (const other of names) if (other !== name && agentOf(other).port !== 0) engine.addPeer(agentOf(other).identity.peerId, [addressOf(name, other)]);
    if (moved) {
      for (const other of names) {
        const e = agentOf(other).engine;
        if (other !== name && e !== undefined && !routes.has(`${other}/${name}`)) e.addPeer(agent.identity.peerId, [addressOf(other, name)]);
      }
    }
  };

  const stopAgent = async (name: string): Promise<void> => {
    const agent = agentOf(name);
    const engine = agent.engine;
    if (engine === undefined) return;
    agent.engine = undefined;
    retired.push(engine);
    visualizer?.removeEngine(engine);
    await engine.stop();
  };

  // Traffic, chaos and progress; everything below is undone in `finally`.
  const timers: ReturnType<typeof setTimeout>[] = [];
  const chaosSteps = new Set<Promise<void>>();
  let pending = 0;
  let finishing = false;
  const startedAt = Date.now();
  try {
    for (const name of names) await startAgent(name);
    for (const name of names) {
      for (const other of names) if (other !== name) agentOf(name).engine!.addPeer(agentOf(other).identity.peerId, [addressOf(name, other)]);
    }

    // The partitioned pair talks only through relays, so a partition is one flag.
    const partitionPair = options.chaos && names.length >= 4 ? ([names[2]!, names[3]!] as const) : undefined;
    const pairRelays: Relay[] = [];
    if (partitionPair !== undefined) {
      const [c, d] = partitionPair;
      for (const [from, to] of [
        [c, d],
        [d, c],
      ] as const) {
        const relay = await Relay.open(agentOf(to).port);
        relays.push(relay);
        pairRelays.push(relay);
        routes.set(`${from}/${to}`, quicAddress(relay.port));
        agentOf(from).engine!.addPeer(agentOf(to).identity.peerId, [quicAddress(relay.port)]);
      }
    }

    visualizer = await startVisualizer({
      inspector,
      engines: names.map((n) => agentOf(n).engine!),
      title: `peerline: ${names.length} agents over QUIC`,
      host: HOST,
      port: options.port,
    });
    report.url = visualizer.url;
    options.onServing?.(visualizer.url);

    const request = (from: string, to: string): void => {
      const engine = agentOf(from).engine;
      if (engine === undefined || engine.status !== 'running') return;
      pending += 1;
      engine
        .openStream(agentOf(to).identity.peerId, PROTOCOL, { timeoutMs: REQUEST_TIMEOUT_MS })
        .then(async (stream) => {
          const text = `hello from ${from}`;
          if ((await sendAndReceive(stream, text)) !== text) throw new Error('echo mismatch');
          report.requests.ok += 1;
        })
        .catch((error: unknown) => {
          report.requests.failed += 1;
          const code = error !== null && typeof error === 'object' && 'code' in error ? String(error.code) : 'STREAM_ERROR';
          report.requests.byCode[code] = (report.requests.byCode[code] ?? 0) + 1;
        })
        .finally(() => {
          pending -= 1;
        });
    };

    const traffic = setInterval(() => {
      if (finishing) return;
      const from = pick(names, random);
      let to = pick(names, random);
      if (to === from) to = names[(names.indexOf(from) + 1) % names.length]!;
      request(from, to);
    }, REQUEST_INTERVAL_MS);
    timers.push(traffic);

    const progress = setInterval(() => {
      const states: Record<string, number> = {};
      for (const name of names) {
        for (const peer of agentOf(name).engine?.snapshot().peers ?? []) states[peer.state] = (states[peer.state] ?? 0) + 1;
      }
      const t = Math.round((Date.now() - startedAt) / 1000);
      const peers = Object.entries(states)
        .sort()
        .map(([state, n]) => `${state} ${n}`)
        .join(', ');
      const up = names.filter((n) => agentOf(n).engine !== undefined).length;
      options.progress?.(
        `${String(t).padStart(4)}s  ok ${report.requests.ok}  failed ${report.requests.failed}  in flight ${pending}  agents up ${up}/${names.length}  peers: ${peers || 'none'}`,
      );
    }, 1000);
    timers.push(progress);

    const durationMs = options.durationS * 1000;
    const chaosAt = (fraction: number, what: string, act: () => Promise<void> | void): void => {
      const at = Math.round(fraction * durationMs);
      const timer = setTimeout(() => {
        if (finishing) return;
        const line = `${(at / 1000).toFixed(1)}s ${what}`;
        report.chaos.push(line);
        out(`-- chaos at ${line}`);
        const step = Promise.resolve()
          .then(act)
          .catch((error: unknown) => out(`-- chaos step failed: ${error instanceof Error ? error.message : String(error)}`))
          .finally(() => chaosSteps.delete(step));
        chaosSteps.add(step);
      }, at);
      timers.push(timer);
    };
    if (options.chaos) {
      const [a, b] = [names[0]!, names[1]!];
      chaosAt(0.15, `${a} drains its connection to ${b}`, () => agentOf(a).engine?.drain(agentOf(b).identity.peerId));
      if (partitionPair !== undefined) {
        const [c, d] = partitionPair;
        chaosAt(0.3, `partition ${c} | ${d}`, () => {
          for (const relay of pairRelays) relay.blocked = true;
        });
        chaosAt(0.5, `heal partition ${c} | ${d}`, () => {
          for (const relay of pairRelays) relay.blocked = false;
        });
      }
      chaosAt(0.6, `stop ${b}`, () => stopAgent(b));
      chaosAt(0.75, `restart ${b}`, () => startAgent(b));
    }

    // Until the duration is over or the signal says stop.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, durationMs);
      timers.push(timer);
      if (options.signal?.aborted === true) resolve();
      options.signal?.addEventListener(
        'abort',
        () => {
          report.interrupted = true;
          resolve();
        },
        { once: true },
      );
    });
  } finally {
    finishing = true;
    for (const timer of timers) clearTimeout(timer);
    await Promise.allSettled([...chaosSteps]);
    // Requests in flight get their answer (bounded by their timeout), then everything stops.
    const waitUntil = Date.now() + REQUEST_TIMEOUT_MS + 1000;
    while (pending > 0 && Date.now() < waitUntil) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const live = names.map((n) => agentOf(n).engine).filter((e): e is Engine => e !== undefined);
    await Promise.allSettled(live.map((e) => e.stop()));
    await Promise.allSettled(relays.map((r) => r.close()));
    await visualizer?.close();
    // Answers settle on later ticks.
    for (let i = 0; i < 5 && pending > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    for (const engine of [...live, ...retired]) {
      report.retries += engine.metrics().retries;
      if (engine.status !== 'stopped') report.leftover.push(`engine ${engine.peerId.slice(0, 12)} ${engine.status}`);
    }
    adapters.forEach((adapter, i) => {
      const stats = adapter.stats();
      if (stats.connections > 0 || stats.dialing > 0) report.leftover.push(`adapter #${i + 1}: ${stats.connections} connections, ${stats.dialing} dialing`);
    });
    report.requests.unanswered = pending;
    // Let rejections created during shutdown reach the hooks before counting.
    await new Promise((resolve) => setImmediate(resolve));
    report.crashes = crashes;
    process.off('unhandledRejection', onCrash);
    process.off('uncaughtException', onCrash);
  }
  return report;
}

export function formatQuicReport(report: QuicDemoReport): string {
  const lines = [
    formatReport(report).replace('peerline demo report', `peerline QUIC demo report${report.interrupted ? ' (interrupted)' : ''}`),
    `  warnings         ${report.warnings}`,
    `  chaos steps      ${report.chaos.length}`,
    ...report.chaos.map((step) => `    ${step}`),
    `  left open        ${report.leftover.length === 0 ? 'nothing' : report.leftover.join('; ')}`,
  ];
  return lines.join('\n');
}
