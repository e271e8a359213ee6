/**
 * Draws a laid-out machine as a self-contained SVG document: no script, no
 * external font or stylesheet, so it renders the same in a README, a browser
 * tab or the live page (which highlights states by their `data-state`).
 */
import type { LaidOutEdge, LaidOutState, MachineLayout, Point } from './layout.js';
import { TEXT } from './layout.js';
import { colorOf } from './theme.js';
import { checkBoolean, checkObject, checkOptionalString, invalidType } from '../protocol/arguments.js';
import { checkLayout } from './checks.js';

export interface SvgOptions {
  /** A title drawn above the graph (and the document's <title>). */
  readonly title?: string;
  /** Paint a white background (for documents shown on dark pages). @default true */
  readonly background?: boolean;
  /** Reserve a count badge on each top-level state, filled in by the live page. @default false */
  readonly badges?: boolean;
}

export function escapeXml(text: string): string {
  if (typeof text !== 'string') throw invalidType('text', 'a string', text);
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const r1 = (n: number): string => (Math.round(n * 10) / 10).toString();

/** An orthogonal polyline with its corners rounded. */
function pathOf(points: readonly Point[], radius = 6): string {
  if (points.length === 0) return '';
  const first = points[0]!;
  let d = `M${r1(first.x)},${r1(first.y)}`;
  for (let i = 1; i < points.length; i++) {
    const p = points[i]!;
    const prev = points[i - 1]!;
    const next = points[i + 1];
    if (next === undefined) {
      d += ` L${r1(p.x)},${r1(p.y)}`;
      break;
    }
    const inLen = Math.hypot(p.x - prev.x, p.y - prev.y);
    const outLen = Math.hypot(next.x - p.x, next.y - p.y);
    const r = Math.min(radius, inLen / 2, outLen / 2);
    if (r < 0.5) {
      d += ` L${r1(p.x)},${r1(p.y)}`;
      continue;
    }
    const ax = p.x - ((p.x - prev.x) / inLen) * r;
    const ay = p.y - ((p.y - prev.y) / inLen) * r;
    const bx = p.x + ((next.x - p.x) / outLen) * r;
    const by = p.y + ((next.y - p.y) / outLen) * r;
    d += ` L${r1(ax)},${r1(ay)} Q${r1(p.x)},${r1(p.y)} ${r1(bx)},${r1(by)}`;
  }
  return d;
}

/** A filled arrowhead at the last point, along the last segment: drawn, not a marker, so it takes its edge's colour. */
function arrowHead(points: readonly Point[], length = 8, half = 3.5): string {
  const tip = points[points.length - 1];
  const from = points[points.length - 2];
  if (tip === undefined || from === undefined) return '';
  const len = Math.hypot(tip.x - from.x, tip.y - from.y) || 1;
  const ux = (tip.x - from.x) / len;
  const uy = (tip.y - from.y) / len;
  const bx = tip.x - ux * length;
  const by = tip.y - uy * length;
  return `<path class="pl-head" d="M${r1(tip.x)},${r1(tip.y)} L${r1(bx - uy * half)},${r1(by + ux * half)} L${r1(bx + uy * half)},${r1(by - ux * half)} z"/>`;
}

function topOf(id: string, machineId: string): string {
  return id.slice(machineId.length + 1).split('.')[0] ?? '';
}

const STYLE = `
.pl-machine { font-family: ${TEXT.stateFont}; }
.pl-title { font-size: 15px; font-weight: 600; fill: #0f172a; }
.pl-state > rect.pl-box { fill: #ffffff; stroke: var(--c); stroke-width: 1.5; }
.pl-state.pl-compound > rect.pl-box { fill: color-mix(in srgb, var(--c) 6%, #ffffff); }
.pl-state.pl-region > rect.pl-box { fill: #ffffff; fill-opacity: 0.6; stroke-dasharray: 5 4; stroke-width: 1; }
.pl-state.pl-final > rect.pl-inner { fill: none; stroke: var(--c); stroke-width: 1; }
.pl-state text.pl-name { font-size: ${TEXT.stateSize}px; font-weight: 600; fill: #0f172a; }
.pl-state.pl-compound > text.pl-name, .pl-state.pl-parallel > text.pl-name { fill: color-mix(in srgb, var(--c) 65%, #0f172a); }
.pl-state.pl-region > text.pl-name { font-size: 12px; font-weight: 500; font-style: italic; fill: #475569; }
.pl-state .pl-kind { font-size: 10px; font-weight: 400; fill: #64748b; }
.pl-initial { fill: #0f172a; }
/* An edge takes the colour of the state it leaves, darkened for contrast on white: bundles of edges stay apart. */
.pl-edge { --ec: color-mix(in srgb, var(--c, #64748b) 75%, #0f172a); }
.pl-edge path { fill: none; stroke: var(--ec); stroke-width: 1.3; }
.pl-edge path.pl-head { fill: var(--ec); stroke: none; }
.pl-edge.pl-init { --ec: #0f172a; }
.pl-edge path.pl-hit { stroke: transparent; stroke-width: 10; }
.pl-edge-label rect { fill: #ffffff; fill-opacity: 0.94; stroke: color-mix(in srgb, var(--ec) 45%, #ffffff); stroke-width: 0.8; }
.pl-edge-label text { font-family: ${TEXT.labelFont}; font-size: ${TEXT.labelSize}px; fill: #1e293b; }
.pl-edge-label text.pl-t-after { fill: #9a3412; }
.pl-edge-label text.pl-t-always { fill: #6d28d9; }
.pl-edge-label text.pl-t-done, .pl-edge-label text.pl-t-error { fill: #0e7490; }
.pl-badge { display: none; }
.pl-badge circle { fill: var(--c); }
.pl-badge text { font-size: 11px; font-weight: 700; fill: #ffffff; text-anchor: middle; }
`;

function stateSvg(s: LaidOutState, machineId: string, badges: boolean): string {
  const top = topOf(s.id, machineId);
  const color = colorOf(top);
  const classes = ['pl-state', `pl-${s.kind}`];
  if (s.region) classes.push('pl-region');
  if (s.depth === 1) classes.push('pl-top');
  const internal = s.internal.length === 0 ? '' : `\nhandles without leaving: ${s.internal.join(', ')}`;
  const title = `<title>${escapeXml(`${s.id.slice(machineId.length + 1)} (${s.kind})${internal}`)}</title>`;
  const box = `<rect class="pl-box" x="${r1(s.x)}" y="${r1(s.y)}" width="${r1(s.width)}" height="${r1(s.height)}" rx="${s.kind === 'atomic' || s.kind === 'final' ? 8 : 12}"/>`;
  const parts = [title, box];
  if (s.kind === 'final') {
    parts.push(`<rect class="pl-inner" x="${r1(s.x + 3.5)}" y="${r1(s.y + 3.5)}" width="${r1(s.width - 7)}" height="${r1(s.height - 7)}" rx="5"/>`);
  }
  if (s.kind === 'compound' || s.kind === 'parallel') {
    const kind = s.kind === 'parallel' ? '<tspan class="pl-kind" dx="8">parallel</tspan>' : '';
    parts.push(`<text class="pl-name" x="${r1(s.x + 12)}" y="${r1(s.y + 20)}">${escapeXml(s.key)}${kind}</text>`);
  } else {
    parts.push(
      `<text class="pl-name" x="${r1(s.x + s.width / 2)}" y="${r1(s.y + s.height / 2)}" text-anchor="middle" dominant-baseline="central">${escapeXml(s.key)}</text>`,
    );
  }
  if (badges && s.depth === 1) {
    parts.push(
      `<g class="pl-badge" data-badge="${escapeXml(top)}"><circle cx="${r1(s.x + s.width - 2)}" cy="${r1(s.y + 2)}" r="11"/><text x="${r1(s.x + s.width - 2)}" y="${r1(s.y + 6)}">0</text></g>`,
    );
  }
  return `<g class="${classes.join(' ')}" data-state="${escapeXml(s.id)}" data-top="${escapeXml(top)}" style="--c:${color}">${parts.join('')}</g>`;
}

function edgeSvg(e: LaidOutEdge, machineId: string): string {
  const events = [...new Set(e.transitions.map((t) => t.eventType).filter((t) => t !== ''))];
  const kinds = [...new Set(e.transitions.map((t) => t.kind))];
  const path = `<path d="${pathOf(e.points)}"/>${arrowHead(e.points)}`;
  const { shown, x, y, width, height, lines } = e.label;
  const tip = `<title>${escapeXml(lines.join('\n'))}</title>`;
  if (!shown) {
    return `<g class="pl-edge ${kinds.map((k) => `pl-edge-${k}`).join(' ')}" ${edgeAttributes(e, machineId, events)}>${tip}${path}<path class="pl-hit" d="${pathOf(e.points)}"/></g>`;
  }
  const texts = lines
    .map((line, i) => {
      const t = e.transitions[i]!;
      return `<text class="pl-t-${t.kind}" x="${r1(x + 5)}" y="${r1(y + 3 + (i + 1) * TEXT.labelLineHeight - 3.5)}" data-transition="${escapeXml(t.id)}">${escapeXml(line)}</text>`;
    })
    .join('');
  const label = `<g class="pl-edge-label"><rect x="${r1(x)}" y="${r1(y)}" width="${r1(width)}" height="${r1(height)}" rx="3"/>${texts}</g>`;
  return `<g class="pl-edge ${kinds.map((k) => `pl-edge-${k}`).join(' ')}" ${edgeAttributes(e, machineId, events)}>${tip}${path}${label}</g>`;
}

function edgeAttributes(e: LaidOutEdge, machineId: string, events: readonly string[]): string {
  const color = colorOf(topOf(e.source, machineId));
  return `data-source="${escapeXml(e.source)}" data-target="${escapeXml(e.target)}" data-events="${escapeXml(events.join(' '))}" style="--c:${color}"`;
}

/** The machine as an SVG document (a string). */
export function renderSvg(layout: MachineLayout, options: SvgOptions = {}): string {
  checkLayout('layout', layout);
  checkObject('options', options);
  checkOptionalString('options.title', options.title);
  checkBoolean('options.background', options.background);
  checkBoolean('options.badges', options.badges);
  const background = options.background ?? true;
  const badges = options.badges ?? false;
  const titleHeight = options.title === undefined ? 0 : 30;
  const pad = badges ? 12 : 0;
  const width = Math.ceil(layout.width + pad * 2);
  const height = Math.ceil(layout.height + titleHeight + pad * 2);
  // Containers first, so nested states and edges draw over them.
  const states = [...layout.states].sort((a, b) => a.depth - b.depth);
  const body = [
    ...states.map((s) => stateSvg(s, layout.machineId, badges)),
    ...layout.initials.map(
      (i) =>
        `<g class="pl-edge pl-init" data-initial-of="${escapeXml(i.parent)}"><path d="${pathOf(i.points)}"/>${arrowHead(i.points, 6, 3)}<circle class="pl-initial" cx="${r1(i.x)}" cy="${r1(i.y)}" r="${i.r}"/></g>`,
    ),
    ...layout.edges.map((e) => edgeSvg(e, layout.machineId)),
  ];
  const title = options.title === undefined ? '' : `<title>${escapeXml(options.title)}</title>`;
  const heading =
    options.title === undefined ? '' : `<text class="pl-title" x="${16 + pad}" y="${22 + pad}">${escapeXml(options.title)}</text>`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="pl-machine" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" data-machine="${escapeXml(layout.machineId)}">`,
    title,
    `<style>${STYLE}</style>`,
    background ? `<rect width="${width}" height="${height}" fill="#ffffff"/>` : '',
    heading,
    `<g transform="translate(${pad},${titleHeight + pad})">`,
    ...body,
    '</g>',
    '</svg>',
    '',
  ].join('\n');
}
