/**
 * A stand-in for the inspector page: a `ws` client that keeps the model the
 * page keeps (peers by key, timeline of the selected peer, engines' metrics)
 * and counts the messages it got.
 */
import WebSocket from 'ws';
import type { EngineView, ServerMessage } from '../../visualizer/server.js';
import type { PeerView, TimelineEntry } from '../../visualizer/inspector.js';

export interface PageClient {
  readonly ws: WebSocket;
  readonly messages: ServerMessage[];
  readonly peers: Map<string, PeerView>;
  readonly timeline: TimelineEntry[];
  engines: EngineView[];
  select(key: string): void;
  /** Resolves when `predicate` holds after some message; rejects after `timeoutMs`. */
  until(predicate: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function connectPage(url: string): Promise<PageClient> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}ws`);
  const messages: ServerMessage[] = [];
  const peers = new Map<string, PeerView>();
  const timeline: TimelineEntry[] = [];
  const waiters = new Set<() => void>();
  const client: PageClient = {
    ws,
    messages,
    peers,
    timeline,
    engines: [],
    select: (key) => {
      timeline.length = 0;
      ws.send(JSON.stringify({ type: 'select', key }));
    },
    until(predicate, what, timeoutMs = 4000) {
      if (predicate()) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!predicate()) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`page never saw: ${what}`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        ws.close();
      }),
  };
  ws.on('message', (data) => {
    const message = JSON.parse(String(data)) as ServerMessage;
    messages.push(message);
    switch (message.type) {
      case 'snapshot':
        peers.clear();
        for (const p of message.peers) peers.set(p.key, p);
        client.engines = message.engines;
        break;
      case 'update':
        for (const p of message.peers) peers.set(p.key, p);
        for (const key of message.removed) peers.delete(key);
        if (message.timeline !== undefined) timeline.push(...message.timeline.entries);
        break;
      case 'timeline':
        timeline.length = 0;
        timeline.push(...message.entries);
        break;
      case 'metrics':
        client.engines = message.engines;
        break;
    }
    for (const check of [...waiters]) check();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return client;
}

/** TCP handles of this process (servers and sockets). */
export function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}
