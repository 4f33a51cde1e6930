// The agent graph pane: dagre's layout drawn as SVG up to CANVAS_THRESHOLD agents, and on a
// canvas above it (same layout, smaller cards, names once zoomed in).

import type { AgentStatus, Doc } from "./doc";
import type { AgentView } from "./derive";
import { edgeKey } from "./derive";
import { clear, h, s, setAttr, setText } from "./dom";
import { attachGestures, sizeCanvas, watchSize } from "./interact";
import { type GraphLayout, layoutGraph, type NodeBox, type Point } from "./layout";
import { type Palette, readPalette, STATUS_LABEL, STATUSES } from "./palette";
import { formatBytes, formatCount, oneLine } from "./text";
import { fit, toContent, type Viewport, zoomAt } from "./viewport";

/** Above this many agents the graph is drawn on a canvas. */
export const CANVAS_THRESHOLD = 150;
/** At most this many pulses animate at once; more edges in one step just light up. */
const MAX_PULSES = 48;
const PULSE_MS = 700;
/** New routes trigger at most one SVG relayout per this many milliseconds. */
const RELAYOUT_MS = 1000;

export interface GraphInput {
  doc: Doc;
  /** Changes when the agents or the declared channels change: the layout is redone. */
  layoutKey: string;
  /** Channels, then routes in the order they were first used: only ever grows for one
   * layoutKey. New routes are laid out again at most every RELAYOUT_MS in SVG mode; on the
   * canvas they are drawn straight between the placed agents, so nothing moves. */
  edges: [string, string][];
  channels: Set<string>;
  views: Map<string, AgentView>;
  statuses: Map<string, AgentStatus>;
  counts: Map<string, number>;
  selected: string | null;
  /** No document yet: the kernel's is on its way. */
  loading: boolean;
}

interface SvgNode {
  g: SVGGElement;
  status: SVGTextElement;
  meta: SVGTextElement;
}

interface SvgEdge {
  g: SVGGElement;
  path: SVGPathElement;
  label: SVGTextElement;
  d: string;
}

let markerCounter = 0;

export class GraphView {
  readonly el: HTMLElement;
  readonly body: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly tip: HTMLElement;
  private svg: SVGSVGElement | null = null;
  private viewportG: SVGGElement | null = null;
  private pulseG: SVGGElement | null = null;
  private canvas: HTMLCanvasElement | null = null;
  private svgNodes = new Map<string, SvgNode>();
  private svgEdges = new Map<string, SvgEdge>();
  private layout: GraphLayout | null = null;
  private layoutKey = "";
  private laidEdges = 0;
  private relayoutTimer: ReturnType<typeof setTimeout> | null = null;
  private view: Viewport = { scale: 1, x: 0, y: 0 };
  private userMoved = false;
  private input: GraphInput | null = null;
  private flashes = new Map<string, number>();
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private frame = 0;
  private readonly cleanups: (() => void)[] = [];
  private readonly markerId = `wb-arrow-${++markerCounter}`;
  /** Exposed for tests and benchmarks. */
  readonly stats = {
    mode: "svg" as "svg" | "canvas",
    /** On the canvas: agents grouped by status, or the dagre layout. */
    canvasView: "status" as "status" | "layout",
    layouts: 0,
    layoutMs: 0,
    draws: 0,
    /** Where an agent is drawn on the canvas (pane pixels), for tests. */
    locate: (name: string): { x: number; y: number } | null => this.locate(name),
  };
  private readonly viewButton: HTMLButtonElement;
  private readonly fitButton: HTMLButtonElement;
  private cells: { name: string; x: number; y: number; size: number }[] = [];

  constructor(private readonly onSelect: (agent: string | null) => void) {
    this.legend = h("div", { class: "wb-legend" });
    const fitButton = h("button", { class: "wb-btn", type: "button", title: "Fit the graph to the pane" }, "Fit");
    fitButton.addEventListener("click", () => this.fitView());
    this.fitButton = fitButton;
    this.viewButton = h("button", { class: "wb-btn", type: "button", "data-graph-view": "" });
    this.viewButton.addEventListener("click", () => this.setCanvasView(this.stats.canvasView === "status" ? "layout" : "status"));
    this.empty = h("div", { class: "wb-empty" });
    this.tip = h("div", { class: "wb-tip" });
    this.body = h("div", { class: "wb-graph-body" }, this.empty, this.tip, h("div", { class: "wb-graph-tools" }, this.viewButton, fitButton));
    this.el = h(
      "section",
      { class: "wb-pane wb-graph", "data-pane": "graph" },
      h("div", { class: "wb-pane-head" }, h("span", { class: "wb-pane-title" }, "Agents"), h("span", { class: "wb-spacer" }), this.legend),
      this.body,
    );
    this.cleanups.push(
      attachGestures(this.body, {
        pan: (dx, dy) => this.moveView({ ...this.view, x: this.view.x + dx, y: this.view.y + dy }),
        zoom: (px, py, factor) => this.moveView(zoomAt(this.view, px, py, factor)),
        click: (px, py, event) => this.click(px, py, event),
        hover: (px, py) => this.hover(px, py),
        leave: () => (this.tip.style.display = "none"),
      }),
      watchSize(this.body, () => {
        if (!this.userMoved) this.fitView();
        else this.applyView();
      }),
    );
  }

  update(input: GraphInput): void {
    this.input = input;
    const agents = input.doc.header.agents;
    this.renderLegend(input);
    if (agents.length === 0) {
      this.showEmpty(input.loading);
      return;
    }
    this.empty.style.display = "none";
    if (input.layoutKey !== this.layoutKey || this.layout === null) this.relayout(input);
    else if (input.edges.length > this.laidEdges) this.newRoutes(input);
    if (this.stats.mode === "svg") this.updateSvg(input);
    else this.requestDraw();
  }

  /** Animates the edges that carried a message in a step that just arrived. */
  pulse(keys: Set<string>): void {
    const now = performance.now();
    let started = 0;
    for (const key of keys) {
      this.flashes.set(key, now + PULSE_MS);
      if (this.stats.mode === "svg" && started < MAX_PULSES && this.pulseSvg(key)) started += 1;
    }
    if (this.stats.mode === "canvas") this.requestDraw();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.expireFlashes();
    }, PULSE_MS + 20);
    this.timers.add(timer);
  }

  /** Draws the canvas again (a theme change); the SVG follows CSS by itself. */
  redraw(): void {
    if (this.stats.mode === "canvas") this.requestDraw();
  }

  destroy(): void {
    for (const cleanup of this.cleanups) cleanup();
    if (this.relayoutTimer !== null) clearTimeout(this.relayoutTimer);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  // ---- layout and view

  private relayout(input: GraphInput): void {
    const agents = input.doc.header.agents.map((a) => a.name);
    const canvas = agents.length > CANVAS_THRESHOLD;
    const started = performance.now();
    const box = this.body.getBoundingClientRect();
    const options = {
      nodeWidth: canvas ? 112 : 180,
      nodeHeight: canvas ? 26 : 58,
      nodeSep: canvas ? 8 : 18,
      rankSep: canvas ? 36 : 44,
      gap: canvas ? 16 : 28,
      aspect: box.width > 0 && box.height > 0 ? box.width / box.height : 2,
    };
    this.layout = layoutGraph(agents, input.edges, options);
    // A small graph is also laid out top to bottom; the direction that fits the pane at the
    // larger scale wins (the same every time for the same graph and pane).
    if (!canvas && box.width > 0 && box.height > 0) {
      const down = layoutGraph(agents, input.edges, { ...options, direction: "TB" });
      if (fitScale(down, box) > fitScale(this.layout, box) * 1.05) this.layout = down;
    }
    this.stats.layoutMs = performance.now() - started;
    this.stats.layouts += 1;
    this.layoutKey = input.layoutKey;
    this.laidEdges = input.edges.length;
    this.setMode(canvas ? "canvas" : "svg");
    if (!canvas) this.buildSvg(input);
    if (!this.userMoved) this.fitView();
  }

  private newRoutes(input: GraphInput): void {
    const layout = this.layout as GraphLayout;
    if (this.stats.mode === "svg") {
      if (this.relayoutTimer !== null) return;
      this.relayoutTimer = setTimeout(() => {
        this.relayoutTimer = null;
        if (this.input !== null) {
          this.relayout(this.input);
          this.updateSvg(this.input);
        }
      }, RELAYOUT_MS);
      return;
    }
    for (const [from, to] of input.edges.slice(this.laidEdges)) {
      const a = layout.nodes.get(from);
      const b = layout.nodes.get(to);
      if (a !== undefined && b !== undefined) layout.edges.push({ from, to, points: [{ x: a.x, y: a.y }, { x: b.x, y: b.y }] });
    }
    this.laidEdges = input.edges.length;
  }

  private setMode(mode: "svg" | "canvas"): void {
    if (mode === "canvas" && this.stats.mode !== "canvas") this.stats.canvasView = "status";
    this.stats.mode = mode;
    this.syncTools();
    if (mode === "svg" && this.canvas !== null) {
      this.canvas.remove();
      this.canvas = null;
    }
    if (mode === "canvas" && this.svg !== null) {
      this.svg.remove();
      this.svg = null;
      this.svgNodes.clear();
      this.svgEdges.clear();
    }
    if (mode === "canvas" && this.canvas === null) {
      this.canvas = h("canvas", { "data-graph": "canvas" });
      this.body.insertBefore(this.canvas, this.tip);
    }
  }

  private fitView(): void {
    this.userMoved = false;
    const box = this.body.getBoundingClientRect();
    if (this.layout === null || box.width === 0) return;
    this.view = fit(this.layout.width, this.layout.height, box.width, box.height, 24, 1.25);
    this.applyView();
  }

  private moveView(view: Viewport): void {
    if (this.stats.mode === "canvas" && this.stats.canvasView === "status") return;
    this.userMoved = true;
    this.view = view;
    this.applyView();
  }

  private applyView(): void {
    if (this.viewportG !== null) {
      this.viewportG.setAttribute("transform", `translate(${this.view.x.toFixed(2)} ${this.view.y.toFixed(2)}) scale(${this.view.scale.toFixed(4)})`);
    }
    if (this.canvas !== null) this.requestDraw();
  }

  private setCanvasView(view: "status" | "layout"): void {
    this.stats.canvasView = view;
    this.syncTools();
    this.requestDraw();
  }

  private syncTools(): void {
    const canvas = this.stats.mode === "canvas";
    this.viewButton.style.display = canvas ? "" : "none";
    this.viewButton.textContent = this.stats.canvasView === "status" ? "Graph" : "By status";
    this.viewButton.title = this.stats.canvasView === "status" ? "Show the laid-out graph" : "Group the agents by status";
    this.fitButton.style.display = canvas && this.stats.canvasView === "status" ? "none" : "";
  }

  private locate(name: string): { x: number; y: number } | null {
    if (this.stats.mode === "canvas" && this.stats.canvasView === "status") {
      const cell = this.cells.find((c) => c.name === name);
      return cell ? { x: cell.x + cell.size / 2, y: cell.y + cell.size / 2 } : null;
    }
    const node = this.layout?.nodes.get(name);
    if (node === undefined) return null;
    return { x: this.view.x + node.x * this.view.scale, y: this.view.y + node.y * this.view.scale };
  }

  private nodeAt(px: number, py: number): NodeBox | null {
    if (this.layout === null) return null;
    if (this.stats.mode === "canvas" && this.stats.canvasView === "status") {
      const cell = this.cells.find((c) => px >= c.x - 0.5 && px < c.x + c.size + 0.5 && py >= c.y - 0.5 && py < c.y + c.size + 0.5);
      return cell ? (this.layout.nodes.get(cell.name) ?? null) : null;
    }
    const p = toContent(this.view, px, py);
    for (const node of this.layout.nodes.values()) {
      if (Math.abs(p.x - node.x) <= node.w / 2 && Math.abs(p.y - node.y) <= node.h / 2) return node;
    }
    return null;
  }

  private click(px: number, py: number, event: MouseEvent): void {
    if (this.stats.mode === "svg") {
      const target = (event.target as Element | null)?.closest?.(".wb-node");
      this.onSelect(target?.getAttribute("data-agent") ?? null);
      return;
    }
    this.onSelect(this.nodeAt(px, py)?.name ?? null);
  }

  private hover(px: number, py: number): void {
    if (this.stats.mode !== "canvas" || this.input === null) return;
    const node = this.nodeAt(px, py);
    if (node === null) {
      this.tip.style.display = "none";
      return;
    }
    const view = this.input.views.get(node.name);
    const status = this.input.statuses.get(node.name) ?? "ready";
    this.tip.textContent = `${oneLine(node.name, 60)}\n${STATUS_LABEL[status]}${view ? ` · ${metaLine(view)}` : ""}`;
    this.tip.style.display = "block";
    this.tip.style.left = `${Math.min(px + 12, this.body.clientWidth - 200)}px`;
    this.tip.style.top = `${py + 12}px`;
  }

  private showEmpty(loading: boolean): void {
    this.layout = null;
    this.layoutKey = "";
    this.setMode("svg");
    if (this.svg !== null) {
      this.svg.remove();
      this.svg = null;
    }
    this.empty.style.display = "flex";
    this.fitButton.style.display = "none";
    clear(this.empty);
    if (loading) {
      this.empty.append(h("b", {}, "Waiting for the run's document…"), h("span", {}, "It comes from the notebook's kernel; run the cell again if nothing appears."));
      return;
    }
    this.empty.append(
      h("b", {}, "No agents yet"),
      h("span", {}, "Add agents to the run, then start it with ", h("code", {}, "run.start()"), " or step it with ", h("code", {}, "run.step()"), "."),
    );
  }

  private renderLegend(input: GraphInput): void {
    const counts = new Map<AgentStatus, number>();
    for (const status of input.statuses.values()) counts.set(status, (counts.get(status) ?? 0) + 1);
    if (this.legend.childElementCount !== STATUSES.length) {
      clear(this.legend);
      for (const status of STATUSES) {
        this.legend.append(
          h("span", { class: "wb-key", "data-status-count": status }, h("span", { class: "wb-dot", style: `background: var(--wb-st-${status})` }), h("span", {})),
        );
      }
    }
    STATUSES.forEach((status, i) => {
      const key = this.legend.children[i] as HTMLElement;
      setText(key.lastChild as Node, `${STATUS_LABEL[status]} ${counts.get(status) ?? 0}`);
      key.style.opacity = counts.get(status) ? "1" : "0.5";
    });
  }

  // ---- SVG mode

  private buildSvg(input: GraphInput): void {
    if (this.svg !== null) this.svg.remove();
    this.svgNodes.clear();
    this.svgEdges.clear();
    const layout = this.layout as GraphLayout;
    const marker = s(
      "marker",
      { id: this.markerId, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "wb-arrow" }),
    );
    const edgesG = s("g", {});
    const nodesG = s("g", {});
    this.pulseG = s("g", {});
    this.viewportG = s("g", {}, edgesG, nodesG, this.pulseG);
    this.svg = s("svg", { "data-graph": "svg" }, s("defs", {}, marker), this.viewportG);
    this.body.insertBefore(this.svg, this.empty);
    for (const route of layout.edges) {
      const key = edgeKey(route.from, route.to);
      const d = smoothPath(route.points);
      const path = s("path", { d, "marker-end": `url(#${this.markerId})` });
      const mid = midpoint(route.points);
      const label = s("text", { x: mid.x, y: mid.y - 4, "text-anchor": "middle" });
      const g = s("g", { class: input.channels.has(key) ? "wb-edge" : "wb-edge wb-route" }, path, label);
      g.setAttribute("data-edge", `${route.from} → ${route.to}`);
      edgesG.append(g);
      this.svgEdges.set(key, { g, path, label, d });
    }
    const kinds = new Map(input.doc.header.agents.map((a) => [a.name, a.kind]));
    for (const node of layout.nodes.values()) nodesG.append(this.buildNode(node, kinds.get(node.name) ?? ""));
    this.applyView();
  }

  private buildNode(node: NodeBox, kind: string): SVGGElement {
    const badge = kindBadge(kind);
    const badgeWidth = 8 + badge.length * 6.2;
    const status = s("text", { x: 26, y: 35, class: "wb-status-text" });
    const meta = s("text", { x: 14, y: 50, class: "wb-meta" });
    const g = s(
      "g",
      { class: "wb-node", transform: `translate(${node.x - node.w / 2} ${node.y - node.h / 2})` },
      s("rect", { class: "wb-card", width: node.w, height: node.h, rx: 6 }),
      s("rect", { class: "wb-bar", x: 0, y: 0, width: 5, height: node.h, rx: 2 }),
      s("text", { x: 14, y: 18, class: "wb-name" }, oneLine(node.name, 19)),
      s("rect", { class: "wb-badge", x: node.w - badgeWidth - 8, y: 7, width: badgeWidth, height: 14, rx: 3 }),
      s("text", { x: node.w - badgeWidth / 2 - 8, y: 17, class: "wb-badge-text", "text-anchor": "middle" }, badge),
      s("circle", { class: "wb-status-dot", cx: 18, cy: 31.5, r: 3.5 }),
      status,
      meta,
    );
    g.setAttribute("data-agent", node.name);
    g.append(s("title", {}, oneLine(node.name, 200)));
    this.svgNodes.set(node.name, { g, status, meta });
    return g;
  }

  private updateSvg(input: GraphInput): void {
    for (const [name, node] of this.svgNodes) {
      const status = input.statuses.get(name) ?? "ready";
      setAttr(node.g, "data-status", status);
      setAttr(node.g, "class", input.selected === name ? "wb-node wb-selected" : "wb-node");
      const streaming = input.doc.live.streaming[name];
      setText(node.status, streaming !== undefined ? `${status} · ${formatCount(streaming)} tok…` : STATUS_LABEL[status]);
      const view = input.views.get(name);
      setText(node.meta, view ? metaLine(view) : "");
    }
    for (const [key, edge] of this.svgEdges) {
      const count = input.counts.get(key) ?? 0;
      setText(edge.label, count > 0 ? formatCount(count) : "");
    }
  }

  private pulseSvg(key: string): boolean {
    const edge = this.svgEdges.get(key);
    if (edge === undefined || this.pulseG === null) return false;
    edge.g.classList.add("wb-active");
    const motion = s("animateMotion", { dur: `${PULSE_MS}ms`, path: edge.d, begin: "indefinite", fill: "freeze" });
    const dot = s("circle", { r: 3.5, class: "wb-pulse" }, motion);
    this.pulseG.append(dot);
    try {
      motion.beginElement();
    } catch {
      // An animation that cannot start leaves the edge lit only.
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      dot.remove();
    }, PULSE_MS);
    this.timers.add(timer);
    return true;
  }

  private expireFlashes(): void {
    const now = performance.now();
    for (const [key, until] of this.flashes) {
      if (until > now) continue;
      this.flashes.delete(key);
      this.svgEdges.get(key)?.g.classList.remove("wb-active");
    }
    if (this.stats.mode === "canvas") this.requestDraw();
  }

  // ---- canvas mode

  private requestDraw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw(): void {
    const canvas = this.canvas;
    const layout = this.layout;
    const input = this.input;
    if (canvas === null || layout === null || input === null) return;
    const ctx = canvas.getContext("2d");
    if (ctx === null) return;
    this.stats.draws += 1;
    const { w, h: height, ratio } = sizeCanvas(canvas);
    const palette = readPalette(this.el);
    if (this.stats.canvasView === "status") {
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      this.drawByStatus(ctx, palette, input, w, height);
      return;
    }
    const view = this.view;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = palette.panel;
    ctx.fillRect(0, 0, w, height);
    ctx.setTransform(ratio * view.scale, 0, 0, ratio * view.scale, ratio * view.x, ratio * view.y);
    const left = -view.x / view.scale;
    const top = -view.y / view.scale;
    const right = left + w / view.scale;
    const bottom = top + height / view.scale;
    const now = performance.now();
    this.drawEdges(ctx, palette, layout, now, view.scale);
    for (const node of layout.nodes.values()) {
      if (node.x + node.w / 2 < left || node.x - node.w / 2 > right || node.y + node.h / 2 < top || node.y - node.h / 2 > bottom) continue;
      this.drawNode(ctx, palette, node, input, view.scale);
    }
  }

  /** Agents grouped by status: one card per status (fixed places, so nothing moves as agents
   * change status), one square per agent in header order, as large as the card allows. */
  private drawByStatus(ctx: CanvasRenderingContext2D, palette: Palette, input: GraphInput, w: number, height: number): void {
    ctx.fillStyle = palette.panel;
    ctx.fillRect(0, 0, w, height);
    const groups = new Map<AgentStatus, string[]>(STATUSES.map((status) => [status, []]));
    for (const agent of input.doc.header.agents) groups.get(input.statuses.get(agent.name) ?? "ready")?.push(agent.name);
    const pad = 10;
    const gap = 8;
    const cardW = (w - 2 * pad - gap * (STATUSES.length - 1)) / STATUSES.length;
    const top = pad;
    const cardH = height - 2 * pad - 26;
    this.cells = [];
    // One square size for every card, the one the largest group needs, so sizes compare.
    const largest = Math.max(...[...groups.values()].map((m) => m.length));
    const { size, columns, capacity } = cellGrid(cardW - 16, cardH - 34, largest);
    STATUSES.forEach((status, i) => {
      const members = groups.get(status) as string[];
      const x = pad + i * (cardW + gap);
      ctx.fillStyle = palette.sunken;
      ctx.fillRect(x, top, cardW, cardH);
      ctx.fillStyle = palette.status[status];
      ctx.fillRect(x, top, cardW, 3);
      ctx.font = `600 11px ${palette.font}`;
      ctx.textBaseline = "middle";
      ctx.fillStyle = palette.fg;
      ctx.fillText(status, x + 8, top + 14, cardW - 50);
      ctx.textAlign = "right";
      ctx.fillText(formatCount(members.length), x + cardW - 8, top + 14);
      ctx.textAlign = "left";
      const gridTop = top + 26;
      members.slice(0, capacity).forEach((name, k) => {
        const cx = x + 8 + (k % columns) * (size + 1);
        const cy = gridTop + Math.floor(k / columns) * (size + 1);
        ctx.fillStyle = palette.status[status];
        ctx.fillRect(cx, cy, size, size);
        if (name === input.selected) {
          ctx.strokeStyle = palette.fg;
          ctx.lineWidth = 2;
          ctx.strokeRect(cx - 1, cy - 1, size + 2, size + 2);
        }
        this.cells.push({ name, x: cx, y: cy, size });
      });
      if (members.length > capacity) {
        ctx.fillStyle = palette.fg2;
        ctx.font = `10px ${palette.font}`;
        ctx.fillText(`+${formatCount(members.length - capacity)} more`, x + 8, top + cardH - 8);
      }
    });
    ctx.fillStyle = palette.fg2;
    ctx.font = `11px ${palette.font}`;
    ctx.fillText(
      `${formatCount(input.doc.header.agents.length)} agents grouped by status: click a square to inspect it, or “Graph” for the laid-out graph.`,
      pad,
      height - pad - 8,
      w - 2 * pad - 150,
    );
  }

  private drawEdges(ctx: CanvasRenderingContext2D, palette: Palette, layout: GraphLayout, now: number, scale: number): void {
    ctx.lineWidth = 1 / Math.max(scale, 0.35);
    ctx.strokeStyle = palette.fg2;
    ctx.globalAlpha = 0.35;
    ctx.beginPath();
    for (const route of layout.edges) polyline(ctx, route.points);
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.strokeStyle = palette.brand;
    ctx.lineWidth = 2 / Math.max(scale, 0.35);
    ctx.beginPath();
    for (const route of layout.edges) {
      if ((this.flashes.get(edgeKey(route.from, route.to)) ?? 0) > now) polyline(ctx, route.points);
    }
    ctx.stroke();
  }

  private drawNode(ctx: CanvasRenderingContext2D, palette: Palette, node: NodeBox, input: GraphInput, scale: number): void {
    const status = input.statuses.get(node.name) ?? "ready";
    const x = node.x - node.w / 2;
    const y = node.y - node.h / 2;
    const detailed = scale >= 0.55;
    ctx.fillStyle = detailed ? palette.sunken : palette.status[status];
    ctx.fillRect(x, y, node.w, node.h);
    if (detailed) {
      ctx.fillStyle = palette.status[status];
      ctx.fillRect(x, y, 4, node.h);
      ctx.fillStyle = palette.fg;
      ctx.font = `11px ${palette.font}`;
      ctx.textBaseline = "middle";
      ctx.fillText(oneLine(node.name, 16), x + 9, node.y, node.w - 12);
    }
    if (input.selected === node.name) {
      ctx.strokeStyle = palette.brand;
      ctx.lineWidth = 2 / scale;
      ctx.strokeRect(x - 1, y - 1, node.w + 2, node.h + 2);
    }
  }
}

/** The largest square (10 px down to 3) whose grid holds `count` in a width x height box. */
function cellGrid(width: number, height: number, count: number): { size: number; columns: number; capacity: number } {
  let fit = { size: 3, columns: 1, capacity: 0 };
  for (const size of [10, 8, 6, 5, 4, 3]) {
    const columns = Math.max(1, Math.floor((width + 1) / (size + 1)));
    const rows = Math.max(0, Math.floor((height + 1) / (size + 1)));
    fit = { size, columns, capacity: columns * rows };
    if (fit.capacity >= count) break;
  }
  return fit;
}

function fitScale(layout: GraphLayout, box: { width: number; height: number }): number {
  return fit(layout.width, layout.height, box.width, box.height, 24, 1.25).scale;
}

function kindBadge(kind: string): string {
  if (kind === "python") return "PY";
  if (kind === "wasm") return "WASM";
  return oneLine(kind || "?", 6).toUpperCase();
}

function metaLine(view: AgentView): string {
  const parts = view.tokens > 0 || view.requests > 0 ? [`${formatCount(view.tokens)} tok`] : [];
  if (view.fuel !== null) parts.push(`fuel ${formatCount(view.fuel)}`);
  if (view.memory !== null) parts.push(formatBytes(view.memory));
  return parts.length > 0 ? parts.join(" · ") : view.lastRan === null ? "not run yet" : `ran at step ${view.lastRan}`;
}

function polyline(ctx: CanvasRenderingContext2D, points: Point[]): void {
  if (points.length < 2) return;
  ctx.moveTo(points[0].x, points[0].y);
  for (let i = 1; i < points.length; i++) ctx.lineTo(points[i].x, points[i].y);
}

function midpoint(points: Point[]): Point {
  if (points.length === 0) return { x: 0, y: 0 };
  if (points.length % 2 === 1) return points[(points.length - 1) / 2];
  const a = points[points.length / 2 - 1];
  const b = points[points.length / 2];
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
}

/** A smooth path through the points (Catmull-Rom as cubic Béziers). */
function smoothPath(points: Point[]): string {
  if (points.length === 0) return "";
  const f = (n: number): string => n.toFixed(1);
  let d = `M${f(points[0].x)},${f(points[0].y)}`;
  for (let i = 0; i < points.length - 1; i++) {
    const p0 = points[Math.max(0, i - 1)];
    const p1 = points[i];
    const p2 = points[i + 1];
    const p3 = points[Math.min(points.length - 1, i + 2)];
    const c1 = { x: p1.x + (p2.x - p0.x) / 6, y: p1.y + (p2.y - p0.y) / 6 };
    const c2 = { x: p2.x - (p3.x - p1.x) / 6, y: p2.y - (p3.y - p1.y) / 6 };
    d += ` C${f(c1.x)},${f(c1.y)} ${f(c2.x)},${f(c2.y)} ${f(p2.x)},${f(p2.y)}`;
  }
  return d;
}
