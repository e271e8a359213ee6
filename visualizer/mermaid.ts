/**
 * The machine as a Mermaid `stateDiagram-v2`, for documents that render
 * Mermaid (GitHub does). Nested states become composite states, parallel
 * regions are separated by `--`, and every transition with a target is one
 * line `source --> target : label`, written in the block of the lowest
 * state that contains both ends.
 */
import type { GraphState, GraphTransition, MachineGraph } from './graph.js';
import { colorOf } from './theme.js';
import { checkObject, checkOptionalString, invalidType } from '../protocol/arguments.js';
import { checkGraph } from './checks.js';

/** A Mermaid-safe id for a state: its path joined with `_`. */
export function mermaidId(state: Pick<GraphState, 'path'>): string {
  checkObject('state', state);
  if (!Array.isArray(state.path)) throw invalidType('state.path', 'an array of state keys', state.path);
  return state.path.map((k) => k.replace(/[^A-Za-z0-9]/g, '_')).join('_');
}

/** Label text Mermaid reads verbatim: no statement separators or entity starts. */
function safeLabel(text: string): string {
  return text.replace(/[;#]/g, ' ').replace(/\s+/g, ' ').trim();
}

export function toMermaid(graph: MachineGraph, options: { title?: string } = {}): string {
  checkGraph('graph', graph);
  checkObject('options', options);
  checkOptionalString('options.title', options.title);
  const byId = new Map(graph.states.map((s) => [s.id, s]));
  const root = byId.get(graph.machineId)!;
  const lines: string[] = [];
  if (options.title !== undefined) lines.push('---', `title: ${JSON.stringify(safeLabel(options.title))}`, '---');
  lines.push('stateDiagram-v2');

  // The state whose block holds a transition: the lowest common ancestor of its ends.
  const chain = (id: string): string[] => {
    const out: string[] = [];
    for (let s = byId.get(id); s !== undefined; s = s.parent === undefined ? undefined : byId.get(s.parent)) out.push(s.id);
    return out;
  };
  const blockOf = (t: GraphTransition): string => {
    const up = new Set(chain(t.source));
    let lca = chain(t.target).find((id) => up.has(id)) ?? graph.machineId;
    // A transition to or from a composite state itself belongs to that state's parent block.
    if (lca === t.source || lca === t.target) lca = byId.get(lca)?.parent ?? graph.machineId;
    return lca;
  };
  const byBlock = new Map<string, GraphTransition[]>();
  for (const t of graph.transitions) {
    const block = blockOf(t);
    const list = byBlock.get(block);
    if (list === undefined) byBlock.set(block, [t]);
    else list.push(t);
  }
  const idOf = (stateId: string): string => mermaidId(byId.get(stateId)!);

  const writeBlock = (state: GraphState, indent: string): void => {
    for (const childId of state.children) {
      const child = byId.get(childId)!;
      const id = mermaidId(child);
      lines.push(`${indent}state "${safeLabel(child.key)}" as ${id}`);
    }
    if (state.initial !== undefined) lines.push(`${indent}[*] --> ${idOf(state.initial)}`);
    state.children.forEach((childId, i) => {
      const child = byId.get(childId)!;
      if (child.children.length > 0) {
        lines.push(`${indent}state ${mermaidId(child)} {`);
        writeBlock(child, `${indent}  `);
        lines.push(`${indent}}`);
      }
      if (state.kind === 'parallel' && i < state.children.length - 1) lines.push(`${indent}--`);
    });
    for (const t of byBlock.get(state.id) ?? []) {
      lines.push(`${indent}${idOf(t.source)} --> ${idOf(t.target)} : ${safeLabel(t.label)}`);
    }
    for (const childId of state.children) {
      if (byId.get(childId)!.kind === 'final') lines.push(`${indent}${idOf(childId)} --> [*]`);
    }
  };
  writeBlock(root, '  ');

  // Colour atomic states by their top-level state (composite states keep Mermaid's own style).
  const tops = new Map<string, string[]>();
  for (const s of graph.states) {
    if (s.path.length === 0 || s.children.length > 0) continue;
    const top = s.path[0]!;
    const list = tops.get(top);
    if (list === undefined) tops.set(top, [mermaidId(s)]);
    else list.push(mermaidId(s));
  }
  for (const [top, ids] of tops) {
    const color = colorOf(top);
    const cls = `st_${top.replace(/[^A-Za-z0-9]/g, '_')}`;
    lines.push(`  classDef ${cls} stroke:${color},stroke-width:2px,fill:#ffffff`);
    lines.push(`  class ${ids.join(',')} ${cls}`);
  }
  return `${lines.join('\n')}\n`;
}
