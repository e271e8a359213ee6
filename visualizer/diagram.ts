/**
 * The machine's static drawings, generated from its definition: an SVG and
 * a Mermaid `stateDiagram-v2`.
 */
import type { AnyStateMachine } from 'xstate';
import { connectionMachine } from '../machines/connection-machine.js';
import { machineGraph } from './graph.js';
import { layoutMachine } from './layout.js';
import { toMermaid } from './mermaid.js';
import { renderSvg } from './svg.js';
import { checkOptionalString } from '../protocol/arguments.js';
import { checkMachine } from './checks.js';

export const DIAGRAM_TITLE = 'peerline: the peer connection machine';

export interface DiagramSources {
  readonly svg: string;
  readonly mermaid: string;
}

/** The SVG and Mermaid texts of `machine` (peerline's connection machine by default). */
export async function diagramSources(machine: AnyStateMachine = connectionMachine, title = DIAGRAM_TITLE): Promise<DiagramSources> {
  checkMachine('machine', machine);
  checkOptionalString('title', title);
  const graph = machineGraph(machine);
  const layout = await layoutMachine(graph);
  return { svg: renderSvg(layout, { title }), mermaid: toMermaid(graph, { title }) };
}
