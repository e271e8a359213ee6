/**
 * The demo swarm over real QUIC on 127.0.0.1: N agents, each with its own
 * Ed25519 identity and UDP socket, open echo streams to each other on the
 * wall clock while a chaos schedule drains a connection, partitions two
 * agents (their traffic runs through UDP fault proxies that can go silent),
 * and stops and restarts an agent (a new engine and adapter, same identity).
 * The agents, proxies and request accounting are `quic-swarm.ts` here,
 * which the chaos soak (`soak/`) runs too.
 * The inspector page watches the whole swarm; a progress line shows it in the
 * terminal; a report closes the run.
 */
import { LIVELY_TIMINGS, QuicSwarm, watchProcess } from './quic-swarm.js';
import { seededRandom, type Random } from '../runtime/index.js';
import { agentNames, createInspector, startVisualizer, type Visualizer } from '../visualizer/index.js';
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

function pick<T>(items: readonly T[], random: Random): T {
  return items[Math.floor(random() * items.length)]!;
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
  const watch = watchProcess();

  const inspector = createInspector();
  const names = agentNames(options.peers);
  // The partitioned pair talks only through UDP proxies, so a partition is one switch.
  const partitionPair = options.chaos && names.length >= 4 ? ([names[2]!, names[3]!] as const) : undefined;
  const inPair = (name: string): boolean => partitionPair !== undefined && partitionPair.includes(name);
  let visualizer: Visualizer | undefined;
  const swarm = await QuicSwarm.create({
    names,
    protocol: PROTOCOL,
    timings: LIVELY_TIMINGS,
    random,
    proxySeed: options.seed,
    proxied: (from, to) => inPair(from) && inPair(to),
    inspect: inspector.inspect,
    onEngine: (name, engine) => {
      engine.transitions$.subscribe(() => {
        report.transitions += 1;
      });
      visualizer?.addEngine(engine, name);
    },
  });

  // Traffic, chaos and progress; everything below is undone in `finally`.
  const timers: ReturnType<typeof setTimeout>[] = [];
  const chaosSteps = new Set<Promise<void>>();
  let finishing = false;
  const startedAt = Date.now();
  try {
    await swarm.startAll();

    visualizer = await startVisualizer({
      inspector,
      engines: names.map((n) => swarm.engine(n)!),
      names: Object.fromEntries(names.map((n) => [swarm.peerId(n), n])),
      title: `peerline: ${names.length} agents over QUIC`,
      host: HOST,
      port: options.port,
    });
    report.url = visualizer.url;
    options.onServing?.(visualizer.url);

    const traffic = setInterval(() => {
      if (finishing) return;
      const from = pick(names, random);
      let to = pick(names, random);
      if (to === from) to = names[(names.indexOf(from) + 1) % names.length]!;
      swarm.request(from, to, `hello from ${from}`, REQUEST_TIMEOUT_MS);
    }, REQUEST_INTERVAL_MS);
    timers.push(traffic);

    const progress = setInterval(() => {
      const states: Record<string, number> = {};
      for (const name of names) {
        for (const peer of swarm.engine(name)?.snapshot().peers ?? []) states[peer.state] = (states[peer.state] ?? 0) + 1;
      }
      const t = Math.round((Date.now() - startedAt) / 1000);
      const peers = Object.entries(states)
        .sort()
        .map(([state, n]) => `${state} ${n}`)
        .join(', ');
      const up = names.filter((n) => swarm.engine(n) !== undefined).length;
      const { ok, failed, wrongEcho } = swarm.tally;
      options.progress?.(
        `${String(t).padStart(4)}s  ok ${ok}  failed ${failed + wrongEcho}  in flight ${swarm.inFlight.size}  agents up ${up}/${names.length}  peers: ${peers || 'none'}`,
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
      chaosAt(0.15, `${a} drains its connection to ${b}`, () => swarm.engine(a)?.drain(swarm.peerId(b)));
      if (partitionPair !== undefined) {
        const [c, d] = partitionPair;
        chaosAt(0.3, `partition ${c} | ${d}`, () => {
          swarm.proxy(c, d)?.blackhole();
          swarm.proxy(d, c)?.blackhole();
        });
        chaosAt(0.5, `heal partition ${c} | ${d}`, () => {
          swarm.proxy(c, d)?.heal();
          swarm.proxy(d, c)?.heal();
        });
      }
      chaosAt(0.6, `stop ${b}`, () => {
        const engine = swarm.engine(b);
        if (engine !== undefined) visualizer?.removeEngine(engine);
        return swarm.stop(b);
      });
      chaosAt(0.75, `restart ${b}`, () => swarm.start(b));
    }

    // Until the duration is over or the signal says stop.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, durationMs);
      timers.push(timer);
      const interrupt = (): void => {
        report.interrupted = true;
        resolve();
      };
      // Aborted already while the agents started (a slow start on a busy machine).
      if (options.signal?.aborted === true) interrupt();
      else options.signal?.addEventListener('abort', interrupt, { once: true });
    });
  } finally {
    finishing = true;
    for (const timer of timers) clearTimeout(timer);
    await Promise.allSettled([...chaosSteps]);
    // Requests in flight get their answer (bounded by their timeout), then everything stops.
    await swarm.settle(REQUEST_TIMEOUT_MS + 1000);
    report.leftover = await swarm.close();
    await visualizer?.close();
    // The stopped engines answered every request; the echo exchanges on their
    // streams fail on later turns of the loop, later still on a busy machine:
    // wait for them, bounded.
    await swarm.settle(2_000);
    for (const engine of swarm.engines) report.retries += engine.metrics().retries;
    const { ok, failed, byCode, wrongEcho } = swarm.tally;
    report.requests = {
      ok,
      failed: failed + wrongEcho,
      byCode: wrongEcho === 0 ? { ...byCode } : { ...byCode, WRONG_ECHO: wrongEcho },
      unanswered: swarm.inFlight.size,
    };
    report.warnings = swarm.warnings;
    // Let rejections created during shutdown reach the hooks before counting.
    await new Promise((resolve) => setImmediate(resolve));
    report.crashes = watch.uncaughtExceptions + watch.unhandledRejections;
    watch.off();
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
