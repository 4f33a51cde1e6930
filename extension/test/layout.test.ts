import assert from "node:assert/strict";
import { test } from "node:test";
import { layoutGraph } from "../src/layout";

const options = { nodeWidth: 100, nodeHeight: 40, nodeSep: 10, rankSep: 30, gap: 20, aspect: 2 };

function overlaps(a: { x: number; y: number; w: number; h: number }, b: { x: number; y: number; w: number; h: number }): boolean {
  return Math.abs(a.x - b.x) < (a.w + b.w) / 2 && Math.abs(a.y - b.y) < (a.h + b.h) / 2;
}

test("a chain is laid out left to right by rank, with a route per edge", () => {
  const layout = layoutGraph(["a", "b", "c"], [["a", "b"], ["b", "c"]], options);
  const [a, b, c] = ["a", "b", "c"].map((n) => layout.nodes.get(n)!);
  assert.ok(a.x < b.x && b.x < c.x);
  assert.equal(layout.edges.length, 2);
  assert.ok(layout.edges.every((e) => e.points.length >= 2));
});

test("no two nodes overlap, isolated agents included, and the layout is deterministic", () => {
  const agents = Array.from({ length: 60 }, (_, i) => `a${i}`);
  const edges: [string, string][] = [];
  for (let i = 1; i < 30; i++) edges.push([`a${Math.floor((i - 1) / 3)}`, `a${i}`]);
  const layout = layoutGraph(agents, edges, options);
  const nodes = [...layout.nodes.values()];
  assert.equal(nodes.length, 60);
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) assert.ok(!overlaps(nodes[i], nodes[j]), `${nodes[i].name} overlaps ${nodes[j].name}`);
  const again = layoutGraph(agents, edges, options);
  assert.deepEqual([...again.nodes.values()], nodes);
  assert.ok(layout.width / layout.height < 6, "components are packed into rows, not one long line");
});
