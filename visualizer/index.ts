/**
 * peerline/visualizer: the live inspector and the machine's drawings.
 *
 * @example
 * const inspector = createInspector();
 * const engine = createEngine({ adapter, inspect: inspector.inspect });
 * const visualizer = await startVisualizer({ inspector, engines: [engine] });
 * console.log(`open ${visualizer.url}`);
 * // ...
 * await visualizer.close();
 */
export {
  createInspector,
  Inspector,
  INSPECT_PROTOCOL_VERSION,
  toTimelineEntry,
  type InspectedEvent,
  type InspectedSnapshot,
  type InspectorEntry,
  type InspectorOptions,
  type InspectorStats,
  type PeerView,
  type StatelyActorEvent,
  type StatelyEventEvent,
  type StatelyInspectionEvent,
  type StatelySnapshotEvent,
  type TimelineEntry,
} from './inspector.js';
export {
  startVisualizer,
  type EngineView,
  type InspectableEngine,
  type ServerMessage,
  type Visualizer,
  type VisualizerOptions,
  type VisualizerStats,
} from './server.js';
export { startLiveSwarm, runInspectDemo, agentNames, type LiveSwarm, type LiveSwarmOptions, type InspectDemoOptions } from './live-swarm.js';
export {
  machineGraph,
  activeStateIds,
  topLevelState,
  describeValue,
  guardName,
  type GraphState,
  type GraphTransition,
  type MachineGraph,
  type StateKind,
  type TransitionKind,
} from './graph.js';
export { layoutMachine, type LayoutOptions, type MachineLayout, type LaidOutEdge, type LaidOutState } from './layout.js';
export { renderSvg, type SvgOptions } from './svg.js';
export { toMermaid, mermaidId } from './mermaid.js';
export { diagramSources, DIAGRAM_TITLE, type DiagramSources } from './diagram.js';
export { RingBuffer } from './ring.js';
export { toJson, type Json, type SerializeOptions } from './serialize.js';
export { STATE_COLORS } from './theme.js';
