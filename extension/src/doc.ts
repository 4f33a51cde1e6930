// The view document and the messages of docs/views.md (format 1), as types.
// Everything here is plain data: the kernel is untrusted for shape as much as the user is,
// so readers below check what they use and fall back to empty values.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type AgentStatus = "ready" | "idle" | "running" | "waiting" | "done" | "faulted";

export interface Message {
  to: string;
  seq: number;
  payload: Json;
}

export interface Infer {
  call: number;
  text: string;
  tokens: number;
  finish: string | null;
  provider: string | null;
  error: string | null;
}

export interface Result {
  status: "ready" | "idle" | "done" | "faulted";
  fault: { kind: string; detail: string; data?: unknown } | null;
  state: Json;
  out: Message[];
  logs: string[];
  infer: Infer[];
  tokens: number;
  requests: number;
  fuel: number | null;
  memory: number | null;
  trimmed: boolean;
}

export interface Step {
  t: number;
  time: number | null;
  ran: string[];
  sends: Message[];
  results: Record<string, Result>;
  warnings: Json[];
}

export type SpanKind = "step" | "queue" | "prefill" | "decode" | "batch";

export interface Span {
  lane: string;
  kind: SpanKind;
  t0: number;
  t1: number;
  step: number;
  agent: string | null;
  batch: number | null;
  provider: string | null;
  tokens: number | null;
  fallback: boolean;
}

export interface AgentHeader {
  name: string;
  kind: string;
  caps: string[];
  fuel: number | null;
  memory: number | null;
  state: Json;
}

export interface Header {
  seed: number;
  policy: string;
  max_batch: number;
  engine: { model: string; provider: string } | null;
  agents: AgentHeader[];
  channels: [string, string][];
}

export interface RunStatus {
  state: "idle" | "running" | "pausing" | "paused" | "finished" | "closed";
  step: number;
  reason: string | null;
}

export interface Live {
  running: string[];
  waiting: string[];
  streaming: Record<string, number>;
}

export interface Doc {
  format: number;
  seq: number;
  source: "live" | "journal";
  title: string;
  clock: "measured" | "logical";
  header: Header;
  steps: Step[];
  spans: Span[];
  status: RunStatus;
  live: Live;
  trimmed: { steps: number; spans: number };
}

export interface Delta {
  type: "delta";
  seq: number;
  steps: Step[];
  spans: Span[];
  status: RunStatus;
  live: Live;
}

export interface Reply {
  type: "reply";
  id: number | null;
  ok: boolean;
  error: string | null;
  result: Json;
}

export type KernelMessage = Delta | { type: "doc"; doc: Doc } | Reply;

export type FrontMessage =
  | { type: "hello"; id: number }
  | { type: "control"; id: number; action: "run" | "pause" | "step" }
  | { type: "rewind"; id: number; step: number }
  | { type: "fork"; id: number; step: number };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function array<T>(value: unknown): T[] {
  return Array.isArray(value) ? (value as T[]) : [];
}

function emptyLive(): Live {
  return { running: [], waiting: [], streaming: {} };
}

export function emptyStatus(): RunStatus {
  return { state: "idle", step: -1, reason: null };
}

/** Reads a document, filling absent parts with empty ones; null when `value` is no document
 * at all (no object, or a format this front end does not know). */
export function readDoc(value: unknown): Doc | null {
  if (!isObject(value) || value.format !== 1 || !isObject(value.header)) return null;
  const header = value.header;
  return {
    format: 1,
    seq: typeof value.seq === "number" ? value.seq : 0,
    source: value.source === "journal" ? "journal" : "live",
    title: typeof value.title === "string" ? value.title : "",
    clock: value.clock === "logical" ? "logical" : "measured",
    header: {
      seed: typeof header.seed === "number" ? header.seed : 0,
      policy: typeof header.policy === "string" ? header.policy : "",
      max_batch: typeof header.max_batch === "number" ? header.max_batch : 1,
      engine: isObject(header.engine) ? (header.engine as Header["engine"]) : null,
      agents: array<AgentHeader>(header.agents).filter((a) => isObject(a) && typeof a.name === "string"),
      channels: array<[string, string]>(header.channels).filter((c) => Array.isArray(c) && c.length === 2),
    },
    steps: array<Step>(value.steps).filter(isObject),
    spans: array<Span>(value.spans).filter(isObject),
    status: isObject(value.status) ? (value.status as unknown as RunStatus) : emptyStatus(),
    live: readLive(value.live),
    trimmed: isObject(value.trimmed)
      ? { steps: Number(value.trimmed.steps) || 0, spans: Number(value.trimmed.spans) || 0 }
      : { steps: 0, spans: 0 },
  };
}

export function readLive(value: unknown): Live {
  if (!isObject(value)) return emptyLive();
  const streaming: Record<string, number> = {};
  if (isObject(value.streaming)) {
    for (const [agent, tokens] of Object.entries(value.streaming)) {
      if (typeof tokens === "number") streaming[agent] = tokens;
    }
  }
  return {
    running: array<string>(value.running).filter((a) => typeof a === "string"),
    waiting: array<string>(value.waiting).filter((a) => typeof a === "string"),
    streaming,
  };
}

/** Reads a kernel message; null for anything that is not one of the three kinds. */
export function readKernelMessage(value: unknown): KernelMessage | null {
  if (!isObject(value)) return null;
  if (value.type === "delta" && typeof value.seq === "number") {
    return {
      type: "delta",
      seq: value.seq,
      steps: array<Step>(value.steps).filter(isObject),
      spans: array<Span>(value.spans).filter(isObject),
      status: isObject(value.status) ? (value.status as unknown as RunStatus) : emptyStatus(),
      live: readLive(value.live),
    };
  }
  if (value.type === "doc") {
    const doc = readDoc(value.doc);
    return doc === null ? null : { type: "doc", doc };
  }
  if (value.type === "reply") {
    return {
      type: "reply",
      id: typeof value.id === "number" ? value.id : null,
      ok: value.ok === true,
      error: typeof value.error === "string" ? value.error : null,
      result: (value.result ?? null) as Json,
    };
  }
  return null;
}
