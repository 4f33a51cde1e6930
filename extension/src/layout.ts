// Graph layout with dagre (layered, left to right or top to bottom). No DOM here.
//
// Each connected component is laid out by dagre on its own; the components' bounding boxes
// are then placed in rows, in the header order of their first agent, so that many unrelated
// agents fill the pane instead of one long column. A lone agent is a component of one node.

import dagre from "@dagrejs/dagre";

export interface Point {
  x: number;
  y: number;
}

export interface NodeBox {
  name: string;
  /** Centre. */
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface EdgeRoute {
  from: string;
  to: string;
  points: Point[];
}

export interface GraphLayout {
  nodes: Map<string, NodeBox>;
  edges: EdgeRoute[];
  width: number;
  height: number;
}

export interface LayoutOptions {
  nodeWidth: number;
  nodeHeight: number;
  nodeSep: number;
  rankSep: number;
  gap: number;
  /** Width / height the packed components aim at (the pane's shape). */
  aspect: number;
  /** Ranks left to right (the default) or top to bottom. */
  direction?: "LR" | "TB";
}

export function layoutGraph(agents: string[], edges: [string, string][], options: LayoutOptions): GraphLayout {
  const components = connectedComponents(agents, edges);
  const laid = components.map((component) => layoutComponent(component, options));
  return pack(laid, options);
}

interface Component {
  names: string[];
  edges: [string, string][];
}

function connectedComponents(agents: string[], edges: [string, string][]): Component[] {
  const parent = new Map<string, string>(agents.map((a) => [a, a]));
  const find = (a: string): string => {
    let root = a;
    while (parent.get(root) !== root) root = parent.get(root) as string;
    let node = a;
    while (node !== root) {
      const next = parent.get(node) as string;
      parent.set(node, root);
      node = next;
    }
    return root;
  };
  for (const [from, to] of edges) {
    if (!parent.has(from) || !parent.has(to)) continue;
    const a = find(from);
    const b = find(to);
    if (a !== b) parent.set(b, a);
  }
  const byRoot = new Map<string, Component>();
  for (const name of agents) {
    const root = find(name);
    let component = byRoot.get(root);
    if (component === undefined) byRoot.set(root, (component = { names: [], edges: [] }));
    component.names.push(name);
  }
  for (const edge of edges) {
    if (parent.has(edge[0]) && parent.has(edge[1])) byRoot.get(find(edge[0]))?.edges.push(edge);
  }
  return [...byRoot.values()];
}

interface Laid {
  nodes: NodeBox[];
  edges: EdgeRoute[];
  width: number;
  height: number;
}

function layoutComponent(component: Component, options: LayoutOptions): Laid {
  const { nodeWidth: w, nodeHeight: h } = options;
  if (component.names.length === 1 && component.edges.length === 0) {
    return { nodes: [{ name: component.names[0], x: w / 2, y: h / 2, w, h }], edges: [], width: w, height: h };
  }
  const graph = new dagre.graphlib.Graph({ multigraph: false, directed: true });
  graph.setGraph({ rankdir: options.direction ?? "LR", nodesep: options.nodeSep, ranksep: options.rankSep, marginx: 0, marginy: 0 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const name of component.names) graph.setNode(name, { width: w, height: h });
  for (const [from, to] of component.edges) graph.setEdge(from, to, {});
  dagre.layout(graph);
  const nodes = component.names.map((name) => {
    const node = graph.node(name);
    return { name, x: node.x, y: node.y, w, h };
  });
  const routes = component.edges.map(([from, to]) => {
    const label = graph.edge(from, to) as { points?: Point[] } | undefined;
    return { from, to, points: (label?.points ?? []).map((p) => ({ x: p.x, y: p.y })) };
  });
  const label = graph.graph() as { width?: number; height?: number };
  return { nodes, edges: routes, width: label.width ?? w, height: label.height ?? h };
}

function pack(laid: Laid[], options: LayoutOptions): GraphLayout {
  const gap = options.gap;
  const area = laid.reduce((sum, c) => sum + (c.width + gap) * (c.height + gap), 0);
  const widest = laid.reduce((max, c) => Math.max(max, c.width), 0);
  const rowWidth = Math.max(widest, Math.sqrt(area * options.aspect));
  const nodes = new Map<string, NodeBox>();
  const edges: EdgeRoute[] = [];
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  let width = 0;
  for (const component of laid) {
    if (x > 0 && x + component.width > rowWidth) {
      x = 0;
      y += rowHeight + gap;
      rowHeight = 0;
    }
    for (const node of component.nodes) nodes.set(node.name, { ...node, x: node.x + x, y: node.y + y });
    for (const edge of component.edges) {
      edges.push({ ...edge, points: edge.points.map((p) => ({ x: p.x + x, y: p.y + y })) });
    }
    width = Math.max(width, x + component.width);
    rowHeight = Math.max(rowHeight, component.height);
    x += component.width + gap;
  }
  return { nodes, edges, width: Math.max(width, 1), height: Math.max(y + rowHeight, 1) };
}
