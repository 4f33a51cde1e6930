// What the views show as of a step, derived from the document alone. No DOM here.

import type { AgentStatus, Doc, Json, Live, Message, Result, Step } from "./doc";

export interface AgentView {
  status: AgentStatus;
  tokens: number;
  requests: number;
  /** Fuel and memory used in the agent's last step (WebAssembly agents), else null. */
  fuel: number | null;
  memory: number | null;
  /** The step the agent last ran in, or null. */
  lastRan: number | null;
}

/** Key of a directed edge; agent names cannot contain U+0000 in JSON from the journal. */
export function edgeKey(from: string, to: string): string {
  return `${from}\u0000${to}`;
}

export function splitEdgeKey(key: string): [string, string] {
  const cut = key.indexOf("\u0000");
  return [key.slice(0, cut), key.slice(cut + 1)];
}

/** Index of the last step with `t <= step` in the ordered steps (-1 if none). */
export function indexAtOrBefore(steps: Step[], step: number): number {
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (steps[mid].t <= step) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

function freshAgents(doc: Doc): Map<string, AgentView> {
  const agents = new Map<string, AgentView>();
  for (const agent of doc.header.agents) {
    agents.set(agent.name, { status: "ready", tokens: 0, requests: 0, fuel: null, memory: null, lastRan: null });
  }
  return agents;
}

/** Agents' statuses and counters, and message counts per edge, after a given step.
 * Advances incrementally while the step only grows; going back recomputes from the first
 * kept step. Counts include steps since dropped from the document if they were seen. */
export class StepCursor {
  agents = new Map<string, AgentView>();
  edges = new Map<string, number>();
  /** The last step folded in (-1: none). */
  lastT = -1;
  private generation = -1;

  /** Folds steps up to and including step `t` (all kept steps for Infinity). */
  moveTo(doc: Doc, generation: number, t: number): void {
    if (generation !== this.generation || t < this.lastT) this.reset(doc, generation);
    const start = indexAtOrBefore(doc.steps, this.lastT) + 1;
    for (let i = start; i < doc.steps.length && doc.steps[i].t <= t; i++) this.fold(doc.steps[i]);
  }

  private reset(doc: Doc, generation: number): void {
    this.agents = freshAgents(doc);
    this.edges = new Map();
    this.lastT = -1;
    this.generation = generation;
  }

  private fold(step: Step): void {
    for (const [name, result] of Object.entries(step.results ?? {})) {
      const view = this.agents.get(name);
      if (view === undefined) continue;
      view.status = result.status;
      view.tokens = result.tokens ?? view.tokens;
      view.requests = result.requests ?? view.requests;
      view.fuel = result.fuel ?? null;
      view.memory = result.memory ?? null;
      for (const message of result.out ?? []) {
        const key = edgeKey(name, message.to);
        this.edges.set(key, (this.edges.get(key) ?? 0) + 1);
      }
    }
    for (const name of step.ran ?? []) {
      const view = this.agents.get(name);
      if (view !== undefined) view.lastRan = step.t;
    }
    this.lastT = step.t;
  }
}

/** Statuses, with the live overlay (running, waiting on the model) when `live` is given. */
export function withLive(agents: Map<string, AgentView>, live: Live | null): Map<string, AgentStatus> {
  const statuses = new Map<string, AgentStatus>();
  for (const [name, view] of agents) statuses.set(name, view.status);
  if (live === null) return statuses;
  for (const name of live.running) if (statuses.has(name)) statuses.set(name, "running");
  for (const name of live.waiting) if (statuses.has(name)) statuses.set(name, "waiting");
  return statuses;
}

export type StateAsOf = { known: true; state: Json; step: number | null } | { known: false; reason: string };

/** The agent's state after step `t`: the last result's state at or before it, else the
 * initial state; unknown when the details were trimmed or earlier steps were dropped. */
export function stateAsOf(doc: Doc, t: number, agent: string, lostSteps: boolean): StateAsOf {
  for (let i = indexAtOrBefore(doc.steps, t); i >= 0; i--) {
    const result = doc.steps[i].results?.[agent];
    if (result === undefined) continue;
    if (result.trimmed || result.state === null) {
      return { known: false, reason: `the state after step ${doc.steps[i].t} was trimmed to keep the view bounded` };
    }
    return { known: true, state: result.state, step: doc.steps[i].t };
  }
  if (lostSteps) return { known: false, reason: "earlier steps were dropped to keep the view bounded" };
  const header = doc.header.agents.find((a) => a.name === agent);
  return { known: true, state: header?.state ?? null, step: null };
}

export interface InboxMessage {
  /** The sender, or null for a message the user sent. */
  from: string | null;
  seq: number;
  payload: Json;
  /** The step it is delivered at (the agent reads it the next time it runs). */
  delivered: number;
}

export interface Inbox {
  messages: InboxMessage[];
  /** Messages beyond the cap, not listed. */
  more: number;
  /** True when the agent's last run is older than the kept steps: the list may miss some. */
  partial: boolean;
}

/** Messages addressed to `agent` that it has not read after step `t`: sent at or after its
 * last run (delivered the step after they are sent) or sent by the user after it, in
 * delivery order (step, then sender, then sequence). At most `cap` are listed. */
export function inboxAsOf(doc: Doc, t: number, agent: string, lostSteps: boolean, cap: number): Inbox {
  const end = indexAtOrBefore(doc.steps, t);
  let lastRun = -1;
  for (let i = end; i >= 0 && lastRun < 0; i--) if (doc.steps[i].ran?.includes(agent)) lastRun = i;
  const found: InboxMessage[] = [];
  let more = 0;
  const keep = (message: InboxMessage): void => {
    if (found.length < cap) found.push(message);
    else more += 1;
  };
  for (let i = Math.max(lastRun, 0); i <= end; i++) {
    const step = doc.steps[i];
    if (i > lastRun) for (const send of step.sends ?? []) if (send.to === agent) keep(inboxEntry(null, send, step.t));
    for (const [from, result] of Object.entries(step.results ?? {})) {
      for (const message of result.out ?? []) if (message.to === agent) keep(inboxEntry(from, message, step.t + 1));
    }
  }
  found.sort(compareInbox);
  return { messages: found, more, partial: lastRun < 0 && lostSteps };
}

function inboxEntry(from: string | null, message: Message, delivered: number): InboxMessage {
  return { from, seq: message.seq, payload: message.payload, delivered };
}

function compareInbox(a: InboxMessage, b: InboxMessage): number {
  if (a.delivered !== b.delivered) return a.delivered - b.delivered;
  const fa = a.from ?? "";
  const fb = b.from ?? "";
  if (fa !== fb) return fa < fb ? -1 : 1;
  return a.seq - b.seq;
}

/** The agent's last result at or before step `t`, with its step. */
export function lastResult(doc: Doc, t: number, agent: string): { step: number; result: Result } | null {
  for (let i = indexAtOrBefore(doc.steps, t); i >= 0; i--) {
    const result = doc.steps[i].results?.[agent];
    if (result !== undefined) return { step: doc.steps[i].t, result };
  }
  return null;
}

export interface FaultEntry {
  step: number;
  kind: string;
  detail: string;
  /** A sandboxed Python agent's traceback (the fault's data), as text; "" if none. */
  traceback: string;
}

/** The traceback a fault's data carries (a string or a list of lines), as text. */
export function faultTraceback(data: unknown): string {
  if (data === null || typeof data !== "object" || Array.isArray(data)) return "";
  const tb = (data as Record<string, unknown>).traceback;
  if (typeof tb === "string") return tb;
  if (Array.isArray(tb)) return tb.map((line) => String(line)).join("\n");
  return "";
}

/** The agent's faults at or before step `t`, newest first, at most `cap`. */
export function faultsAsOf(doc: Doc, t: number, agent: string, cap: number): FaultEntry[] {
  const faults: FaultEntry[] = [];
  for (let i = indexAtOrBefore(doc.steps, t); i >= 0 && faults.length < cap; i--) {
    const fault = doc.steps[i].results?.[agent]?.fault;
    if (fault) faults.push({ step: doc.steps[i].t, kind: String(fault.kind), detail: String(fault.detail), traceback: faultTraceback(fault.data) });
  }
  return faults;
}

/** Edges that carried a message in `step`, for the pulse animation. */
export function edgesInStep(step: Step): Set<string> {
  const keys = new Set<string>();
  for (const [from, result] of Object.entries(step.results ?? {})) {
    for (const message of result.out ?? []) keys.add(edgeKey(from, message.to));
  }
  return keys;
}

/** All edges to lay out: the declared channels, then every route a kept step used, each once,
 * in a fixed order (channels as declared, routes sorted), at most `cap`. */
export function graphEdges(doc: Doc, cap: number): { edges: [string, string][]; more: number } {
  const names = new Set(doc.header.agents.map((a) => a.name));
  const seen = new Set<string>();
  const edges: [string, string][] = [];
  for (const [from, to] of doc.header.channels) {
    const key = edgeKey(from, to);
    if (names.has(from) && names.has(to) && !seen.has(key)) {
      seen.add(key);
      edges.push([from, to]);
    }
  }
  const routes = new Set<string>();
  for (const step of doc.steps) for (const key of edgesInStep(step)) if (!seen.has(key)) routes.add(key);
  let more = 0;
  for (const key of [...routes].sort()) {
    const [from, to] = splitEdgeKey(key);
    if (!names.has(from) || !names.has(to)) continue;
    if (edges.length < cap) edges.push([from, to]);
    else more += 1;
  }
  return { edges, more };
}
