import assert from "node:assert/strict";
import { test } from "node:test";
import { buildLanes, ENGINE_LANE, spanAt, stepBoundaries, visibleRange } from "../src/lanes";
import { doc, result, span, step } from "./fixtures";

test("lanes: engine first, then agents in header order, with spans ordered by start", () => {
  const d = doc(["b", "a"], [], [span("a", "decode", 2, 3), span("a", "queue", 0, 1), span(ENGINE_LANE, "batch", 1, 2), span("zz", "step", 0, 1)]);
  const lanes = buildLanes(d);
  assert.deepEqual(lanes.lanes.map((l) => l.name), [ENGINE_LANE, "b", "a", "zz"]);
  assert.deepEqual(lanes.byName.get("a")?.spans.map((s) => s.t0), [0, 2]);
  assert.equal(lanes.start, 0);
  assert.equal(lanes.end, 3);
  assert.equal(lanes.spanCount, 4);
});

test("spans with no valid times are left out", () => {
  const d = doc(["a"], [], [span("a", "step", 2, 1), span("a", "step", Number.NaN, 1), span("a", "step", 0, 1)]);
  assert.equal(buildLanes(d).spanCount, 1);
});

test("the visible range holds every overlapping span, long ones included", () => {
  const spans = [span("a", "step", 0, 600)];
  for (let i = 1; i <= 1000; i++) spans.push(span("a", "decode", i, i + 0.5));
  const lane = buildLanes(doc(["a"], [], spans)).byName.get("a")!;
  const [from, to] = visibleRange(lane, 500.2, 502.1);
  const picked = lane.spans.slice(from, to).filter((s) => s.t1 >= 500.2);
  assert.deepEqual(picked.map((s) => s.t0), [0, 500, 501, 502]);
  for (const [i, s] of lane.spans.entries()) {
    if (i < from || i >= to) assert.ok(s.t1 < 500.2 || s.t0 > 502.1, `span ${i} should be outside`);
  }
});

test("with short spans the visible range is only the spans in the window", () => {
  const spans = [];
  for (let i = 0; i < 10000; i++) spans.push(span("a", "decode", i, i + 0.5));
  const lane = buildLanes(doc(["a"], [], spans)).byName.get("a")!;
  const [from, to] = visibleRange(lane, 5000.2, 5003.1);
  assert.deepEqual(lane.spans.slice(from, to).map((s) => s.t0), [5000, 5001, 5002, 5003]);
});

test("engine spans of one batch get one row per member in agent order", () => {
  const d = doc(["a", "b", "c"], [], [
    span(ENGINE_LANE, "batch", 0, 2, { step: 1, batch: 0 }),
    span(ENGINE_LANE, "decode", 0, 2, { step: 1, batch: 0, agent: "c" }),
    span(ENGINE_LANE, "decode", 0, 2, { step: 1, batch: 0, agent: "a" }),
    span(ENGINE_LANE, "decode", 3, 4, { step: 1, batch: 1, agent: "b" }),
  ]);
  const lane = buildLanes(d).byName.get(ENGINE_LANE)!;
  const rows = new Map(lane.spans.map((s, i) => [`${s.kind}:${s.agent}`, lane.rows[i]]));
  assert.equal(rows.get("decode:a"), 0);
  assert.equal(rows.get("decode:c"), 1);
  assert.equal(rows.get("decode:b"), 0);
  assert.equal(lane.rowCount, 2);
  assert.equal(spanAt(lane, 1, 1, 0)?.agent, "c");
  assert.equal(spanAt(lane, 2.5, 0, 0.1), null);
});

test("step boundaries: commit times on the measured clock, t + 1 on the logical one", () => {
  const d = doc(["a"], [step(0, { a: result() }), step(1, { a: result() })]);
  assert.deepEqual(stepBoundaries(d), [{ t: 0, at: 0.5 }, { t: 1, at: 1.5 }]);
  d.clock = "logical";
  assert.deepEqual(stepBoundaries(d), [{ t: 0, at: 1 }, { t: 1, at: 2 }]);
});

test("an engine lane of batch outlines only shows the members' requests from their lanes", () => {
  const d = doc(["a", "b"], [], [
    span(ENGINE_LANE, "batch", 0, 2, { step: 0, batch: 0 }),
    span("a", "queue", 0, 0.1, { step: 0, batch: 0 }),
    span("a", "decode", 0.1, 2, { step: 0, batch: 0 }),
    span("b", "decode", 0.1, 1.5, { step: 0, batch: 0, agent: "b" }),
    span("b", "decode", 3, 4, { step: 1, batch: null }),
  ]);
  const engine = buildLanes(d).byName.get(ENGINE_LANE)!;
  assert.deepEqual(engine.spans.map((s) => `${s.kind}:${s.lane}`), ["batch:engine", "decode:a", "decode:b"]);
  assert.deepEqual([...engine.rows], [0, 0, 1]);
  assert.equal(engine.rowCount, 2);
});
