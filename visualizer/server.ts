/**
 * The live inspector's local server: one HTTP + WebSocket port on the
 * loopback interface that serves a self-contained page (no CDN, no hosted
 * site) and streams the inspector's view of every peer machine to it.
 *
 * Updates are coalesced: events only mark peers dirty, and every
 * `flushIntervalMs` each page gets one message with the peers that changed
 * (plus the new timeline lines of the peer it shows), so a burst of events
 * from hundreds of peers costs the browser a few messages a second. A page
 * that reads too slowly is skipped and sent a full snapshot once it caught up.
 *
 * `/inspect` also accepts `@statelyai/inspect`'s WebSocket inspector
 * (`createWebSocketInspector({ url: 'ws://127.0.0.1:PORT/inspect' })`), so
 * an agent in another process can be watched here too.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import '../protocol/dispose.js';
import {
  checkBoolean,
  checkNumber,
  checkObject,
  checkOptionalNumber,
  checkOptionalString,
  checkString,
  invalidType,
  invalidValue,
  PORT,
  POSITIVE,
} from '../protocol/arguments.js';
import { checkEngine, checkMachine } from './checks.js';
import type { AnyStateMachine } from 'xstate';
import { connectionMachine } from '../machines/connection-machine.js';
import { machineGraph } from './graph.js';
import { createInspector, Inspector, type PeerView, type TimelineEntry, toTimelineEntry } from './inspector.js';
import { layoutMachine } from './layout.js';
import { renderSvg } from './svg.js';
import { STATE_COLORS } from './theme.js';

/** What the server reads from an engine: peerline's `Engine` fits. */
export interface InspectableEngine {
  readonly peerId: string;
  readonly status?: string;
  snapshot(): {
    readonly status?: string;
    readonly peers: readonly { readonly peerId: string; readonly state: string }[];
    readonly sessions?: readonly SessionView[];
  };
  metrics(): object;
}

/** A resumable stream's session as the page lists it (from `engine.snapshot().sessions`). */
export interface SessionView {
  readonly sessionId: string;
  readonly peerId: string;
  readonly protocol: string;
  readonly role: string;
  readonly state: string;
  readonly resumes: number;
  readonly buffered: number;
}

export interface VisualizerOptions {
  /** 0 picks a free port. @default 0 */
  readonly port?: number;
  /** A loopback address: the page shows internals and has no authentication. @default '127.0.0.1' */
  readonly host?: string;
  /** Engines whose metrics (and, if not inspected, peers) the page shows. More can be added later. */
  readonly engines?: readonly InspectableEngine[];
  /**
   * Display names by peer id (e.g. `{ [alice.peerId]: 'alice' }`): the page shows an engine, and
   * every peer with that id, by its name; other ids are shortened (the full id on hover and in
   * the selected peer's details).
   */
  readonly names?: Readonly<Record<string, string>>;
  /** The sink the engines were created with (`createEngine({ inspect: inspector.inspect })`). @default a new one */
  readonly inspector?: Inspector;
  /** The machine drawn. @default peerline's connection machine */
  readonly machine?: AnyStateMachine;
  readonly title?: string;
  /** Longest wait before a change reaches the page. @default 100 */
  readonly flushIntervalMs?: number;
  /** How often engines' metrics are read and pushed when they changed. @default 1000 */
  readonly metricsIntervalMs?: number;
  /** Accept `@statelyai/inspect` WebSocket inspectors on `/inspect`. @default true */
  readonly acceptInspectors?: boolean;
}

export interface VisualizerStats {
  readonly pages: number;
  readonly inspectors: number;
  /** WebSocket messages sent to pages since start. */
  readonly messagesSent: number;
  /** Flushes that sent something. */
  readonly flushes: number;
}

export interface Visualizer {
  /** The page, e.g. `http://127.0.0.1:43121/`. */
  readonly url: string;
  readonly port: number;
  readonly inspector: Inspector;
  /** Shows `engine` too; `name` is its display name (as in `names`), kept for its peer id. */
  addEngine(engine: InspectableEngine, name?: string): void;
  removeEngine(engine: InspectableEngine): void;
  stats(): VisualizerStats;
  /** Closes every socket and the server; resolves when nothing is left open. */
  close(): Promise<void>;
  /** `await using visualizer = await startVisualizer(...)`: close() at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

interface PageClient {
  readonly ws: WebSocket;
  selected: string | undefined;
  timeline: TimelineEntry[];
  /** Missed updates while its socket was backed up: gets a full snapshot next. */
  stale: boolean;
}

export interface EngineView {
  readonly id: string;
  readonly status: string;
  readonly metrics: object | null;
  /** Peers from `engine.snapshot()`, only for an engine whose machines the inspector does not see. */
  readonly peers?: readonly { readonly peerId: string; readonly state: string }[];
  /** The engine's resumable-stream sessions (at most 50), when it has any. */
  readonly sessions?: readonly SessionView[];
}

/** Messages from the server to the page. */
export type ServerMessage =
  | {
      type: 'hello';
      title: string;
      machineId: string;
      states: string[];
      colors: Record<string, string>;
      flushIntervalMs: number;
      /** Display names by peer id. */
      names: Record<string, string>;
    }
  | { type: 'names'; names: Record<string, string> }
  | { type: 'snapshot'; peers: PeerView[]; engines: EngineView[] }
  | { type: 'update'; peers: PeerView[]; removed: string[]; timeline?: { key: string; entries: TimelineEntry[] } }
  | { type: 'timeline'; key: string; peer: PeerView | null; entries: TimelineEntry[] }
  | { type: 'metrics'; engines: EngineView[] };

const PAGE_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** The compact graph has no labels to make room for: tighter spacing draws its state names larger in the same panel. */
const COMPACT_SPACING: Readonly<Record<string, string>> = {
  'elk.layered.spacing.nodeNodeBetweenLayers': '28',
  'elk.layered.spacing.edgeNodeBetweenLayers': '10',
  'elk.layered.spacing.edgeEdgeBetweenLayers': '7',
  'elk.spacing.nodeNode': '24',
  'elk.spacing.edgeNode': '10',
  'elk.spacing.edgeEdge': '7',
};

/** Bytes queued on a page's socket above which it is skipped (and resynced later). */
const HIGH_WATER = 1 << 20;
/** Timeline lines kept for a page between two flushes. */
const MAX_TIMELINE_BACKLOG = 500;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

function checkName(name: unknown, what: string): string {
  checkString(what, name);
  if (name.trim() === '') throw invalidValue(what, 'a name that is not blank', name);
  return name;
}

function send(ws: WebSocket, text: string): boolean {
  if (ws.readyState !== WebSocket.OPEN) return false;
  ws.send(text);
  return true;
}

/** Starts the server; resolves once it listens. */
export async function startVisualizer(options: VisualizerOptions = {}): Promise<Visualizer> {
  checkVisualizerOptions(options);
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  const flushIntervalMs = options.flushIntervalMs ?? 100;
  const metricsIntervalMs = options.metricsIntervalMs ?? 1000;
  const inspector = options.inspector ?? createInspector();
  const machine = options.machine ?? connectionMachine;
  const title = options.title ?? 'peerline inspector';
  const engines = new Set<InspectableEngine>(options.engines ?? []);
  const names: Record<string, string> = {};
  for (const [peerId, name] of Object.entries(options.names ?? {})) names[peerId] = checkName(name, `options.names[${JSON.stringify(peerId)}]`);

  const graph = machineGraph(machine);
  // The page shows the compact graph (labels as tooltips) and, on demand, the labelled one.
  const [compact, labelled] = await Promise.all([layoutMachine(graph, { labels: false, elk: COMPACT_SPACING }), layoutMachine(graph)]);
  const svgCompact = renderSvg(compact, { background: false, badges: true });
  const svgLabelled = renderSvg(labelled, { background: false, badges: true });
  const files = new Map<string, string>();
  for (const name of new Set(Object.values(PAGE_FILES).map((f) => f.file))) {
    files.set(name, await readFile(new URL(`./page/${name}`, import.meta.url), 'utf8'));
  }
  const topStates = graph.states.filter((s) => s.path.length === 1).map((s) => s.key);

  const pages = new Map<WebSocket, PageClient>();
  const inspectors = new Set<WebSocket>();
  const dirty = new Set<string>();
  const removed = new Set<string>();
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  let messagesSent = 0;
  let flushes = 0;
  let lastMetrics = '';
  let closing: Promise<void> | undefined;
  let remoteSeq = 0;

  const sendTo = (client: PageClient, message: ServerMessage): void => {
    if (send(client.ws, JSON.stringify(message))) messagesSent += 1;
  };

  const engineViews = (): EngineView[] => {
    const seen = new Set(inspector.engines());
    const views: EngineView[] = [];
    for (const engine of engines) {
      const inspected = seen.has(engine.peerId);
      let metrics: object | null = null;
      let snapshot: ReturnType<InspectableEngine['snapshot']> | undefined;
      try {
        metrics = engine.metrics();
        const live = (metrics as { resume?: { live?: unknown } }).resume?.live;
        // The peer list comes from the inspector when it sees this engine's machines; sessions only from the snapshot.
        if (!inspected || engine.status === undefined || (typeof live === 'number' && live > 0)) snapshot = engine.snapshot();
      } catch {
        // An engine that fails to report shows without numbers.
      }
      const status = engine.status ?? snapshot?.status ?? 'unknown';
      const sessions = snapshot?.sessions?.slice(0, 50).map((x) => ({
        sessionId: x.sessionId,
        peerId: x.peerId,
        protocol: x.protocol,
        role: x.role,
        state: x.state,
        resumes: x.resumes,
        buffered: x.buffered,
      }));
      const view: EngineView = inspected
        ? { id: engine.peerId, status, metrics }
        : { id: engine.peerId, status, metrics, peers: snapshot?.peers.map((p) => ({ peerId: p.peerId, state: p.state })) ?? [] };
      views.push(sessions === undefined || sessions.length === 0 ? view : { ...view, sessions });
      seen.delete(engine.peerId);
    }
    // Engines known only from inspection events (e.g. a remote agent).
    for (const id of seen) views.push({ id, status: 'inspected', metrics: null });
    return views;
  };

  const fullSnapshot = (client: PageClient): void => {
    client.stale = false;
    client.timeline = [];
    sendTo(client, { type: 'snapshot', peers: inspector.peers(), engines: engineViews() });
    if (client.selected !== undefined) {
      sendTo(client, {
        type: 'timeline',
        key: client.selected,
        peer: inspector.peer(client.selected) ?? null,
        entries: inspector.timeline(client.selected),
      });
    }
  };

  const flush = (): void => {
    flushTimer = undefined;
    const peers: PeerView[] = [];
    for (const key of dirty) {
      const view = inspector.peer(key);
      if (view !== undefined) peers.push(view);
    }
    const gone = [...removed];
    dirty.clear();
    removed.clear();
    let sent = false;
    for (const client of pages.values()) {
      if (client.ws.readyState !== WebSocket.OPEN) continue;
      if (client.ws.bufferedAmount > HIGH_WATER) {
        client.stale = true;
        continue;
      }
      if (client.stale) {
        fullSnapshot(client);
        sent = true;
        continue;
      }
      const entries = client.timeline.splice(0);
      if (peers.length === 0 && gone.length === 0 && entries.length === 0) continue;
      sendTo(client, {
        type: 'update',
        peers,
        removed: gone,
        ...(entries.length > 0 && client.selected !== undefined ? { timeline: { key: client.selected, entries } } : {}),
      });
      sent = true;
    }
    if (sent) flushes += 1;
  };

  const schedule = (): void => {
    if (flushTimer === undefined && closing === undefined) {
      flushTimer = setTimeout(flush, flushIntervalMs);
      flushTimer.unref();
    }
  };

  // Last value JSON of each page's selected peer, to mark timeline lines that change state.
  const lastValue = new Map<string, string>();
  const unsubscribe = inspector.subscribe((entry) => {
    if (!entry.root || entry.event.type === '@xstate.event') return;
    dirty.add(entry.key);
    removed.delete(entry.key);
    if (entry.event.type === '@xstate.snapshot') {
      let line: TimelineEntry | undefined;
      for (const client of pages.values()) {
        if (client.selected !== entry.key) continue;
        line ??= toTimelineEntry(entry.event, lastValue.get(entry.key));
        client.timeline.push(line);
        if (client.timeline.length > MAX_TIMELINE_BACKLOG) client.timeline.shift();
      }
      if (line !== undefined) lastValue.set(entry.key, JSON.stringify(line.value));
    }
    schedule();
  });
  const unsubscribeRemoved = inspector.onRemoved((key) => {
    dirty.delete(key);
    lastValue.delete(key);
    removed.add(key);
    schedule();
  });

  const metricsTick = (): void => {
    if (pages.size === 0) return;
    for (const client of pages.values()) {
      if (client.stale && client.ws.bufferedAmount <= HIGH_WATER) fullSnapshot(client);
    }
    const views = engineViews();
    const text = JSON.stringify(views);
    if (text === lastMetrics) return;
    lastMetrics = text;
    for (const client of pages.values()) {
      if (client.stale || client.ws.bufferedAmount > HIGH_WATER) continue;
      sendTo(client, { type: 'metrics', engines: views });
    }
  };
  const metricsTimer = setInterval(metricsTick, metricsIntervalMs);
  metricsTimer.unref();

  const hello = (): ServerMessage => ({
    type: 'hello',
    title,
    machineId: graph.machineId,
    states: topStates,
    colors: { ...STATE_COLORS },
    flushIntervalMs,
    names: { ...names },
  });

  const onPageMessage = (client: PageClient, data: RawData): void => {
    let message: unknown;
    try {
      message = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (message === null || typeof message !== 'object') return;
    const m = message as { type?: unknown; key?: unknown };
    if (m.type === 'select') {
      client.selected = typeof m.key === 'string' ? m.key : undefined;
      client.timeline = [];
      if (client.selected === undefined) return;
      const entries = inspector.timeline(client.selected);
      const last = entries[entries.length - 1];
      if (last !== undefined) lastValue.set(client.selected, JSON.stringify(last.value));
      sendTo(client, { type: 'timeline', key: client.selected, peer: inspector.peer(client.selected) ?? null, entries });
    } else if (m.type === 'resync') {
      fullSnapshot(client);
    }
  };

  // ------------------------------------------------------------------ HTTP

  let allowedHosts = new Set<string>();
  const hostAllowed = (req: IncomingMessage): boolean => allowedHosts.has((req.headers.host ?? '').toLowerCase());
  const originAllowed = (req: IncomingMessage): boolean => {
    const origin = req.headers.origin;
    if (origin === undefined) return true; // not a browser page
    try {
      const url = new URL(origin);
      return url.protocol === 'http:' && allowedHosts.has(url.host.toLowerCase());
    } catch {
      return false;
    }
  };

  const respond = (res: ServerResponse, status: number, type: string, body: string): void => {
    res.writeHead(status, {
      'Content-Type': type,
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Content-Security-Policy':
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    });
    res.end(body);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (!hostAllowed(req)) return respond(res, 403, 'text/plain; charset=utf-8', 'forbidden host\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return respond(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const page = PAGE_FILES[url.pathname];
    if (page !== undefined) return respond(res, 200, page.type, files.get(page.file)!);
    switch (url.pathname) {
      case '/graph.svg':
        return respond(res, 200, 'image/svg+xml; charset=utf-8', url.searchParams.get('labels') === '1' ? svgLabelled : svgCompact);
      case '/api/state':
        return respond(res, 200, 'application/json', JSON.stringify({ peers: inspector.peers(), engines: engineViews(), stats: inspector.stats() }));
      case '/api/history': {
        const key = url.searchParams.get('key') ?? '';
        return respond(res, 200, 'application/json', JSON.stringify(inspector.history(key)));
      }
      case '/favicon.ico':
        res.writeHead(204).end();
        return;
      default:
        return respond(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  };

  const server: Server = createServer(onRequest);
  server.on('clientError', (_error, socket) => socket.destroy());
  const pageWss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  const inspectWss = new WebSocketServer({ noServer: true, maxPayload: 8 * 1024 * 1024 });

  const refuse = (socket: Duplex, status: string): void => {
    socket.on('error', () => {});
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    if (closing !== undefined) return refuse(socket, '503 Service Unavailable');
    if (!hostAllowed(req) || !originAllowed(req)) return refuse(socket, '403 Forbidden');
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/ws') {
      pageWss.handleUpgrade(req, socket, head, (ws) => {
        const client: PageClient = { ws, selected: undefined, timeline: [], stale: false };
        pages.set(ws, client);
        ws.on('error', () => ws.terminate());
        ws.on('close', () => pages.delete(ws));
        ws.on('message', (data) => onPageMessage(client, data));
        sendTo(client, hello());
        fullSnapshot(client);
      });
    } else if (path === '/inspect' && options.acceptInspectors !== false) {
      inspectWss.handleUpgrade(req, socket, head, (ws) => {
        const origin = `remote-${++remoteSeq}`;
        inspectors.add(ws);
        ws.on('error', () => ws.terminate());
        ws.on('close', () => inspectors.delete(ws));
        ws.on('message', (data) => {
          let event: unknown;
          try {
            event = JSON.parse(data.toString());
          } catch {
            return;
          }
          inspector.ingest(event, origin);
        });
      });
    } else {
      refuse(socket, '404 Not Found');
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', () => {});
  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  allowedHosts = new Set([`${urlHost}:${actualPort}`, `127.0.0.1:${actualPort}`, `localhost:${actualPort}`, `[::1]:${actualPort}`]);

  const close = async (): Promise<void> => {
    clearInterval(metricsTimer);
    if (flushTimer !== undefined) clearTimeout(flushTimer);
    flushTimer = undefined;
    unsubscribe();
    unsubscribeRemoved();
    const sockets = [...pages.keys(), ...inspectors];
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === WebSocket.CLOSED) return resolve();
            const timer = setTimeout(() => {
              ws.terminate();
              resolve();
            }, 250);
            ws.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            ws.close(1001, 'inspector closing');
          }),
      ),
    );
    pages.clear();
    inspectors.clear();
    pageWss.close();
    inspectWss.close();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    // The listening handle is released in the loop's close phase: let one full turn pass.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
  };

  return {
    url: `http://${urlHost}:${actualPort}/`,
    port: actualPort,
    inspector,
    addEngine: (engine, name) => {
      checkEngine('engine', engine);
      if (name !== undefined && names[engine.peerId] !== checkName(name, 'name')) {
        names[engine.peerId] = name;
        for (const client of pages.values()) sendTo(client, { type: 'names', names: { ...names } });
      }
      engines.add(engine);
    },
    removeEngine: (engine) => {
      checkEngine('engine', engine);
      engines.delete(engine);
    },
    stats: () => ({ pages: pages.size, inspectors: inspectors.size, messagesSent, flushes }),
    close: () => {
      closing ??= close();
      return closing;
    },
    [Symbol.asyncDispose]: () => {
      closing ??= close();
      return closing;
    },
  };
}

function checkVisualizerOptions(options: VisualizerOptions): void {
  checkObject('options', options);
  if (options.host !== undefined) {
    if (typeof options.host !== 'string') throw invalidType('options.host', 'a loopback address', options.host);
    // The page shows internals and has no authentication.
    if (!isLoopback(options.host)) throw invalidValue('options.host', 'a loopback address (127.0.0.1, ::1, localhost)', options.host);
  }
  checkOptionalNumber('options.port', options.port, PORT);
  if (options.names !== undefined) checkObject('options.names', options.names);
  if (options.engines !== undefined) {
    if (!Array.isArray(options.engines)) throw invalidType('options.engines', 'an array of engines', options.engines);
    options.engines.forEach((engine, i) => checkEngine(`options.engines[${i}]`, engine));
  }
  if (options.inspector !== undefined && !(options.inspector instanceof Inspector)) {
    throw invalidType('options.inspector', 'an Inspector (createInspector())', options.inspector);
  }
  if (options.machine !== undefined) checkMachine('options.machine', options.machine);
  checkOptionalString('options.title', options.title);
  if (options.flushIntervalMs !== undefined) checkNumber('options.flushIntervalMs', options.flushIntervalMs, POSITIVE);
  if (options.metricsIntervalMs !== undefined) checkNumber('options.metricsIntervalMs', options.metricsIntervalMs, POSITIVE);
  checkBoolean('options.acceptInspectors', options.acceptInspectors);
}
