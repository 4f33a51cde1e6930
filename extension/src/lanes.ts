// Timeline lanes and visible-range selection. No DOM here.
//
// Each lane keeps its spans ordered by start, with the running maximum of their ends, so the
// spans overlapping a time window are found by two binary searches: drawing costs what is
// visible, not what is kept.

import type { Doc, Span } from "./doc";

export const ENGINE_LANE = "engine";
/** The most sub-rows the engine lane splits a batch into; later members share the last. */
export const MAX_ENGINE_ROWS = 8;

export interface Lane {
  name: string;
  engine: boolean;
  spans: Span[];
  /** maxEnd[i] = max(spans[0..i].t1): nondecreasing. */
  maxEnd: Float64Array;
  /** The sub-row of each span (engine lane: position in its batch; else 0). */
  rows: Uint8Array;
  rowCount: number;
}

export interface LaneSet {
  lanes: Lane[];
  byName: Map<string, Lane>;
  start: number;
  end: number;
  spanCount: number;
}

function byStart(a: Span, b: Span): number {
  return a.t0 - b.t0;
}

function isOrdered(spans: Span[]): boolean {
  for (let i = 1; i < spans.length; i++) if (spans[i].t0 < spans[i - 1].t0) return false;
  return true;
}

/** Engine lane first, then one lane per agent in the header's order, then any other lane a
 * span names. Agent lanes exist even without spans. */
export function buildLanes(doc: Doc): LaneSet {
  const grouped = new Map<string, Span[]>();
  grouped.set(ENGINE_LANE, []);
  for (const agent of doc.header.agents) if (!grouped.has(agent.name)) grouped.set(agent.name, []);
  let start = Infinity;
  let end = -Infinity;
  let spanCount = 0;
  for (const span of doc.spans) {
    if (typeof span.t0 !== "number" || typeof span.t1 !== "number" || !(span.t1 >= span.t0)) continue;
    const lane = typeof span.lane === "string" ? span.lane : ENGINE_LANE;
    let list = grouped.get(lane);
    if (list === undefined) grouped.set(lane, (list = []));
    list.push(span);
    start = Math.min(start, span.t0);
    end = Math.max(end, span.t1);
    spanCount += 1;
  }
  borrowRequests(grouped);
  const order = new Map(doc.header.agents.map((a, i) => [a.name, i]));
  const lanes: Lane[] = [];
  const byName = new Map<string, Lane>();
  for (const [name, spans] of grouped) {
    if (!isOrdered(spans)) spans.sort(byStart);
    const lane = indexLane(name, spans, name === ENGINE_LANE, order);
    lanes.push(lane);
    byName.set(name, lane);
  }
  if (!Number.isFinite(start)) {
    start = 0;
    end = 1;
  }
  return { lanes, byName, start, end, spanCount };
}

/** An engine lane with batch outlines but no request spans of its own shows the batches'
 * members: the agents' prefill and decode spans that name a batch (the same objects). */
function borrowRequests(grouped: Map<string, Span[]>): void {
  const engine = grouped.get(ENGINE_LANE) as Span[];
  if (engine.some(isRequest)) return;
  const borrowed: Span[] = [];
  for (const [name, spans] of grouped) {
    if (name === ENGINE_LANE) continue;
    for (const span of spans) if (isRequest(span) && span.batch !== null && span.batch !== undefined) borrowed.push(span);
  }
  if (borrowed.length === 0) return;
  const merged = engine.concat(borrowed);
  merged.sort(byStart);
  grouped.set(ENGINE_LANE, merged);
}

function isRequest(span: Span): boolean {
  return span.kind === "prefill" || span.kind === "decode";
}

/** The agent a request span is for: its `agent`, else its lane. */
export function requestAgent(span: Span): string | null {
  return span.agent ?? (span.lane === ENGINE_LANE ? null : span.lane);
}

function indexLane(name: string, spans: Span[], engine: boolean, order: Map<string, number>): Lane {
  const maxEnd = new Float64Array(spans.length);
  let running = -Infinity;
  for (let i = 0; i < spans.length; i++) {
    running = Math.max(running, spans[i].t1);
    maxEnd[i] = running;
  }
  const rows = new Uint8Array(spans.length);
  let rowCount = 1;
  if (engine) rowCount = assignBatchRows(spans, rows, order);
  return { name, engine, spans, maxEnd, rows, rowCount };
}

/** Engine spans of one request (with an agent) get the row of the agent's place among the
 * members of its (step, batch), in agent order; batch outlines stay on row 0. */
function assignBatchRows(spans: Span[], rows: Uint8Array, order: Map<string, number>): number {
  const members = new Map<string, string[]>();
  for (const span of spans) {
    const agent = requestAgent(span);
    if (agent === null || span.kind === "batch") continue;
    const key = batchKey(span);
    const list = members.get(key) ?? [];
    if (!list.includes(agent)) list.push(agent);
    members.set(key, list);
  }
  let rowCount = 1;
  for (const list of members.values()) {
    list.sort((a, b) => (order.get(a) ?? 1e9) - (order.get(b) ?? 1e9) || (a < b ? -1 : a > b ? 1 : 0));
    rowCount = Math.max(rowCount, Math.min(list.length, MAX_ENGINE_ROWS));
  }
  spans.forEach((span, i) => {
    const agent = requestAgent(span);
    if (agent === null || span.kind === "batch") return;
    const place = members.get(batchKey(span))?.indexOf(agent) ?? 0;
    rows[i] = Math.min(place, MAX_ENGINE_ROWS - 1);
  });
  return rowCount;
}

/** Spans with the same key shared one batch. */
export function batchKey(span: Span): string {
  return `${span.step}:${span.batch ?? "-"}`;
}

/** The index range [from, to) of a lane's spans that may overlap [t0, t1]: every span in it
 * starts at or before t1, and none before it ends at or after t0. */
export function visibleRange(lane: Lane, t0: number, t1: number): [number, number] {
  let lo = 0;
  let hi = lane.spans.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (lane.spans[mid].t0 <= t1) lo = mid + 1;
    else hi = mid;
  }
  const to = lo;
  lo = 0;
  hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (lane.maxEnd[mid] < t0) lo = mid + 1;
    else hi = mid;
  }
  return [lo, to];
}

/** The span drawn at time `t` on `row` of the lane (the last drawn wins), within `slack`. */
export function spanAt(lane: Lane, t: number, row: number, slack: number): Span | null {
  const [from, to] = visibleRange(lane, t - slack, t + slack);
  let found: Span | null = null;
  for (let i = from; i < to; i++) {
    const span = lane.spans[i];
    if (span.kind === "batch" || lane.rows[i] !== row) continue;
    if (span.t0 - slack <= t && t <= span.t1 + slack) found = span;
  }
  return found;
}

/** Step boundaries to draw: each kept step's commit time (measured clock) or its end in
 * logical time (step t spans [t, t + 1]). */
export function stepBoundaries(doc: Doc): { t: number; at: number }[] {
  const marks: { t: number; at: number }[] = [];
  for (const step of doc.steps) {
    const at = doc.clock === "logical" ? step.t + 1 : step.time;
    if (typeof at === "number") marks.push({ t: step.t, at });
  }
  return marks;
}
