/** peerline: the connection lifecycle engine. */
export {
  createEngine,
  Engine,
  INSPECT_ATTACHED_EVENT,
  transportErrorInfo,
  type EngineConfig,
  type EngineMetrics,
  type EngineSnapshot,
  type EngineStatus,
  type InspectionObserver,
  type InspectionSubscription,
  type AddPeerOptions,
  type OpenStreamOptions,
  type PeerSnapshot,
  type StartOptions,
  type StopOptions,
  type Transition,
} from './engine.js';
export { LOG_LEVELS, type Logger, type LogLevel } from './logger.js';
export {
  CHANNELS,
  type AdmissionRefusedMessage,
  type DialMessage,
  type HeartbeatMessage,
  type RequestErrorMessage,
  type StreamOpenMessage,
  type TransitionMessage,
} from './diagnostics.js';
export { prometheus, PROMETHEUS_CONTENT_TYPE, type MetricsSource, type PrometheusOptions } from './prometheus.js';
export { isArgumentError, type ArgumentError, type ArgumentErrorCode } from '../protocol/arguments.js';
export * from './errors.js';
export { DEFAULTS, resolveOptions, type EngineInit, type EngineOptions } from './defaults.js';
export type { AdmissionSnapshot, RefusalCode } from './admission.js';
export type { InboundGate } from '../protocol/adapter.js';
export type { RateLimit } from '../protocol/rate-limit.js';
export { backoffDelay, maxAttempts, RETRY_DEFAULTS, type RetryPolicy } from './retry.js';
export { systemClock, seededRandom } from './clock.js';
export { type Random } from '../protocol/time.js';
export { DialQueue } from './dial-queue.js';
export { LATENCY_BUCKETS_MS, type HistogramSnapshot, type MetricsSnapshot } from './metrics.js';
export type { LeasedConnection, PeerStream, StreamAnswer, StreamHandler, StreamRequest } from './streams.js';
export { STREAM_LIMIT_REASON, type HandlerOptions } from './protocol-limits.js';
export { echo, sendAndReceive } from './echo.js';
export { RESUME_PROTOCOL } from './resume/frames.js';
export type { ResumeOptions, ResumeStats, SessionTransition } from './resume/manager.js';
export type { ResumableStream, SessionSnapshot } from './resume/session.js';
export type { Adapter, Connection, Stream } from '../protocol/adapter.js';
export type { Clock } from '../protocol/time.js';
export { ConnectionErrorCode, ConnectionErrorReason, ErrorCodes, type ErrorCode } from '../protocol/codes.js';
export { ConnectionStates, type ConnectionState } from '../machines/types.js';
