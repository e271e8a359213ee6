/**
 * The demo swarm on the in-memory network: N agents open streams to each
 * other on a schedule while a chaos schedule drains one, partitions two, and
 * stops and restarts one. Runs on the virtual clock, so a minute of swarm
 * time takes a moment and a seed replays the same run. Prints every
 * transition and ends with a report.
 */
import { MemoryNetwork, VirtualClock } from '../adapters/memory/index.js';
import { createEngine, echo, seededRandom, sendAndReceive, type Engine, type PeerlineError, type Random } from '../runtime/index.js';

export interface DemoOptions {
  peers: number;
  /** Virtual seconds to run. */
  durationS: number;
  seed: number;
  chaos: boolean;
  /** Print every transition. */
  verbose: boolean;
  out: (line: string) => void;
}

export interface DemoReport {
  requests: { ok: number; failed: number; byCode: Record<string, number>; unanswered: number };
  transitions: number;
  retries: number;
  crashes: number;
  chaos: string[];
}

const PROTOCOL = '/demo/echo/1';

function pick<T>(items: readonly T[], random: Random): T {
  return items[Math.floor(random() * items.length)]!;
}

export async function runMemoryDemo(options: DemoOptions): Promise<DemoReport> {
  const { out } = options;
  const clock = new VirtualClock();
  const random = seededRandom(options.seed);
  const network = new MemoryNetwork({ clock, latencyMs: 2, seed: options.seed });
  const names = Array.from({ length: options.peers }, (_, i) => `agent-${i + 1}`);
  const engines = new Map<string, Engine>();
  const report: DemoReport = {
    requests: { ok: 0, failed: 0, byCode: {}, unanswered: 0 },
    transitions: 0,
    retries: 0,
    crashes: 0,
    chaos: [],
  };
  let crashes = 0;
  const onCrash = (): void => {
    crashes += 1;
  };
  process.on('unhandledRejection', onCrash);
  process.on('uncaughtException', onCrash);
  const retired: Engine[] = [];

  const startAgent = async (name: string): Promise<void> => {
    const engine = createEngine({
      adapter: network.node(name),
      clock,
      random,
      trace: false,
      heartbeat: { intervalMs: 2000, timeoutMs: 800, misses: 2 },
      idleTimeoutMs: 15_000,
      connectTimeoutMs: 3000,
      drainDeadlineMs: 3000,
      retry: { strategy: 'exponential', initialDelayMs: 500, maxAttempts: 3 },
    });
    engine.handle(PROTOCOL, echo);
    for (const other of names) if (other !== name) engine.addPeer(other, [network.address(other)]);
    engine.transitions$.subscribe((t) => {
      report.transitions += 1;
      if (options.verbose) {
        const at = (t.at / 1000).toFixed(3).padStart(8);
        out(`${at}s  ${name.padEnd(9)} -> ${t.peerId.padEnd(9)} ${(t.from ?? 'new').padEnd(11)} => ${t.to.padEnd(11)} (${t.event})`);
      }
    });
    engines.set(name, engine);
    await engine.start();
  };

  for (const name of names) await startAgent(name);

  let pending = 0;
  const request = (from: string, to: string): void => {
    const engine = engines.get(from);
    if (engine === undefined || engine.status !== 'running') return;
    pending += 1;
    engine
      .openStream(to, PROTOCOL, { timeoutMs: 5000 })
      .then(async (stream) => {
        await sendAndReceive(stream, `hello from ${from}`);
        report.requests.ok += 1;
      })
      .catch((error: PeerlineError | Error) => {
        report.requests.failed += 1;
        const code = 'code' in error ? error.code : 'STREAM_ERROR';
        report.requests.byCode[code] = (report.requests.byCode[code] ?? 0) + 1;
      })
      .finally(() => {
        pending -= 1;
      });
  };

  const chaosAt = (s: number, what: string, act: () => Promise<void> | void): void => {
    clock.setTimeout(() => {
      report.chaos.push(`${s}s ${what}`);
      out(`-- chaos at ${s}s: ${what}`);
      void Promise.resolve()
        .then(act)
        .catch(() => {});
    }, s * 1000);
  };
  if (options.chaos && names.length >= 4) {
    const [a, b, c, d] = [names[0]!, names[1]!, names[2]!, names[3]!];
    const third = Math.max(3, Math.floor(options.durationS / 6));
    chaosAt(third, `${a} drains its connection to ${b}`, () => engines.get(a)?.drain(b));
    chaosAt(2 * third, `partition ${c} | ${d}`, () => network.partition([c], [d]));
    chaosAt(3 * third, `heal partition`, () => network.heal());
    chaosAt(4 * third, `stop ${b}`, async () => {
      const engine = engines.get(b);
      engines.delete(b);
      if (engine !== undefined) {
        retired.push(engine);
        await engine.stop();
      }
    });
    chaosAt(4 * third + 4, `restart ${b}`, () => startAgent(b));
  }

  // The request schedule: every 100 ms of virtual time, a random agent asks a random other.
  const end = options.durationS * 1000;
  for (let t = 0; t < end; t += 100) {
    const from = pick(names, random);
    let to = pick(names, random);
    if (to === from) to = names[(names.indexOf(from) + 1) % names.length]!;
    request(from, to);
    await clock.advance(100);
  }
  // Let requests in flight finish, then stop everything (bounded by the drain deadline).
  await clock.advance(6000);
  const stops = [...engines.values()].map((e) => e.stop());
  for (let i = 0; i < 100; i++) await clock.advance(100);
  await Promise.all(stops);
  for (const engine of [...engines.values(), ...retired]) {
    const m = engine.metrics();
    report.retries += m.retries;
  }
  report.requests.unanswered = pending;
  report.crashes = crashes;
  process.off('unhandledRejection', onCrash);
  process.off('uncaughtException', onCrash);
  return report;
}

export function formatReport(report: DemoReport): string {
  const lines = [
    '',
    'peerline demo report',
    `  requests ok      ${report.requests.ok}`,
    `  requests failed  ${report.requests.failed}`,
    ...Object.entries(report.requests.byCode)
      .sort()
      .map(([code, n]) => `    ${code.padEnd(24)} ${n}`),
    `  unanswered       ${report.requests.unanswered}`,
    `  transitions      ${report.transitions}`,
    `  retries          ${report.retries}`,
    `  crashes          ${report.crashes}`,
  ];
  return lines.join('\n');
}
