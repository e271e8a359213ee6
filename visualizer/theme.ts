/** Colours of the connection machine's top-level states, shared by the SVG and the page. */
export const STATE_COLORS: Readonly<Record<string, string>> = {
  start: '#94a3b8',
  connecting: '#d97706',
  handshaking: '#7c3aed',
  ready: '#16a34a',
  draining: '#0891b2',
  forceClosed: '#ea580c',
  errored: '#dc2626',
  closed: '#64748b',
  gaveUp: '#9f1239',
};

export const FALLBACK_COLOR = '#475569';

export function colorOf(topState: string | undefined): string {
  return (topState !== undefined && STATE_COLORS[topState]) || FALLBACK_COLOR;
}
