// The inference timeline pane: one canvas, drawn in requestAnimationFrame, only the spans of
// the visible time window and lanes (two binary searches per lane, see lanes.ts).

import type { Doc, Span } from "./doc";
import { h } from "./dom";
import { attachGestures, sizeCanvas, watchSize } from "./interact";
import { batchKey, buildLanes, ENGINE_LANE, type Lane, type LaneSet, spanAt, stepBoundaries, visibleRange } from "./lanes";
import { type Palette, providerColour, providerShort, readPalette } from "./palette";
import { formatCount, formatDuration, formatTime, oneLine } from "./text";

const GUTTER = 136;
const AXIS = 22;
const LANE = 20;
const ENGINE_ROW = 11;
const RIGHT_PAD = 10;

interface Window {
  t0: number;
  t1: number;
}

interface Placed {
  lane: Lane;
  y: number;
  height: number;
}

export class TimelineView {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly tip: HTMLElement;
  private readonly note: HTMLElement;
  private doc: Doc | null = null;
  private version = -1;
  private builtVersion = -2;
  private lanes: LaneSet | null = null;
  private placed: Placed[] = [];
  private marks: { t: number; at: number }[] = [];
  private window: Window = { t0: 0, t1: 1 };
  private fitted = true;
  private following = false;
  private scrollY = 0;
  private hovered: Span | null = null;
  private spanNote = "";
  private frame = 0;
  private readonly cleanups: (() => void)[] = [];
  /** Exposed for tests and benchmarks: draws done, spans drawn by the last one, its time. */
  readonly stats = {
    draws: 0,
    spansDrawn: 0,
    lastDrawMs: 0,
    lanes: 0,
    /** Where time `t` on a lane's first row is drawn (pane pixels), for tests. */
    pointAt: (lane: string, t: number): { x: number; y: number } | null => this.pointAt(lane, t),
  };

  constructor() {
    this.canvas = h("canvas", { "data-timeline": "canvas" });
    this.tip = h("div", { class: "wb-tip" });
    this.note = h("span", { class: "wb-muted" });
    this.body = h("div", { class: "wb-timeline-body" }, this.canvas, this.tip);
    const legend = h(
      "div",
      { class: "wb-legend" },
      key("var(--wb-tl-queue)", "queue"),
      key("var(--wb-tl-prefill)", "prefill"),
      key("var(--wb-tl-decode)", "decode"),
      key("var(--wb-tl-step)", "step"),
      key("transparent", "batch", "border: 1.5px solid var(--wb-brand)"),
      key("var(--wb-tl-cuda)", "GPU"),
      key("var(--wb-tl-cpu)", "CPU"),
      key("var(--wb-error)", "fallback"),
    );
    this.el = h(
      "section",
      { class: "wb-pane wb-timeline", "data-pane": "timeline" },
      h("div", { class: "wb-pane-head" }, h("span", { class: "wb-pane-title" }, "Inference"), this.note, h("span", { class: "wb-spacer" }), legend),
      this.body,
    );
    this.cleanups.push(
      attachGestures(this.body, {
        pan: (dx, dy) => this.pan(dx, dy),
        zoom: (px, _py, factor, event) => (event.shiftKey ? this.pan(0, -(event.deltaY || 0)) : this.zoom(px, factor)),
        click: () => undefined,
        hover: (px, py) => this.hover(px, py),
        leave: () => this.setHover(null, 0, 0),
      }),
      watchSize(this.body, () => this.requestDraw()),
    );
    const onDouble = (): void => {
      this.fitted = true;
      this.requestDraw();
    };
    this.body.addEventListener("dblclick", onDouble);
    this.cleanups.push(() => this.body.removeEventListener("dblclick", onDouble));
  }

  /** New data: `version` changes whenever spans or steps changed. */
  update(doc: Doc, version: number): void {
    this.doc = doc;
    this.version = version;
    this.requestDraw();
  }

  destroy(): void {
    for (const cleanup of this.cleanups) cleanup();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  requestDraw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  // ---- data and geometry

  private rebuild(doc: Doc): void {
    const previousEnd = this.lanes?.end ?? 0;
    this.lanes = buildLanes(doc);
    const hideEngine = this.lanes.byName.get(ENGINE_LANE)?.spans.length === 0 && doc.header.engine === null;
    this.placed = [];
    let y = AXIS;
    for (const lane of this.lanes.lanes) {
      if (lane.engine && hideEngine) continue;
      // The engine lane has room for its name and provider label at least.
      const height = lane.engine ? Math.max(LANE + 12, lane.rowCount * ENGINE_ROW + 8) : LANE;
      this.placed.push({ lane, y, height });
      y += height;
    }
    this.marks = stepBoundaries(doc);
    this.builtVersion = this.version;
    this.stats.lanes = this.placed.length;
    if (this.following) {
      const width = this.window.t1 - this.window.t0;
      const shift = this.lanes.end - previousEnd;
      if (shift > 0) this.window = { t0: this.window.t0 + shift, t1: this.window.t0 + shift + width };
    }
    const total = this.lanes.spanCount;
    const trimmed = doc.trimmed.spans;
    this.spanNote = total === 0 ? "" : `${formatCount(total)} spans${trimmed > 0 ? ` (${formatCount(trimmed)} older trimmed)` : ""}`;
  }

  private fullWindow(): Window {
    const lanes = this.lanes;
    if (lanes === null) return { t0: 0, t1: 1 };
    let end = lanes.end;
    for (const mark of this.marks) end = Math.max(end, mark.at);
    const start = Math.min(lanes.start, this.marks.length > 0 ? this.marks[0].at : lanes.start);
    const span = Math.max(end - start, 1e-3);
    return { t0: start - span * 0.01, t1: end + span * 0.02 };
  }

  private plotWidth(): number {
    return Math.max(1, this.canvas.clientWidth - GUTTER - RIGHT_PAD);
  }

  private xOf(t: number): number {
    return GUTTER + ((t - this.window.t0) / (this.window.t1 - this.window.t0)) * this.plotWidth();
  }

  private tOf(x: number): number {
    return this.window.t0 + ((x - GUTTER) / this.plotWidth()) * (this.window.t1 - this.window.t0);
  }

  private zoom(px: number, factor: number): void {
    if (this.fitted) this.window = this.fullWindow();
    this.fitted = false;
    const full = this.fullWindow();
    const at = this.tOf(Math.max(GUTTER, px));
    const width = Math.min((full.t1 - full.t0) * 4, Math.max(1e-6, (this.window.t1 - this.window.t0) / factor));
    const k = (at - this.window.t0) / (this.window.t1 - this.window.t0);
    this.window = { t0: at - k * width, t1: at - k * width + width };
    this.following = this.window.t1 >= full.t1 - (full.t1 - full.t0) * 0.005;
    this.requestDraw();
  }

  private pan(dx: number, dy: number): void {
    if (this.fitted) this.window = this.fullWindow();
    this.fitted = false;
    const dt = (dx / this.plotWidth()) * (this.window.t1 - this.window.t0);
    this.window = { t0: this.window.t0 - dt, t1: this.window.t1 - dt };
    const last = this.placed.length > 0 ? this.placed[this.placed.length - 1] : null;
    const contentHeight = last ? last.y + last.height : 0;
    const maxScroll = Math.max(0, contentHeight - this.canvas.clientHeight + 4);
    this.scrollY = Math.max(0, Math.min(maxScroll, this.scrollY - dy));
    const full = this.fullWindow();
    this.following = this.window.t1 >= full.t1 - (full.t1 - full.t0) * 0.005;
    this.requestDraw();
  }

  private pointAt(lane: string, t: number): { x: number; y: number } | null {
    const placed = this.placed.find((p) => p.lane.name === lane);
    if (placed === undefined) return null;
    const y = placed.lane.engine ? placed.y + 4 + ENGINE_ROW / 2 : placed.y + LANE / 2;
    return { x: this.xOf(t), y: y - this.scrollY };
  }

  private hover(px: number, py: number): void {
    if (px < GUTTER || this.lanes === null) return this.setHover(null, px, py);
    const y = py + this.scrollY;
    const placed = this.placed.find((p) => y >= p.y && y < p.y + p.height);
    if (placed === undefined) return this.setHover(null, px, py);
    const row = placed.lane.engine ? Math.max(0, Math.floor((y - placed.y - 4) / ENGINE_ROW)) : 0;
    const slack = (3 / this.plotWidth()) * (this.window.t1 - this.window.t0);
    this.setHover(spanAt(placed.lane, this.tOf(px), row, slack), px, py);
  }

  private setHover(span: Span | null, px: number, py: number): void {
    if (span !== this.hovered) {
      this.hovered = span;
      this.requestDraw();
    }
    if (span === null || this.doc === null) {
      this.tip.style.display = "none";
      return;
    }
    this.tip.textContent = describeSpan(span, this.doc.clock);
    this.tip.style.display = "block";
    this.tip.style.left = `${Math.min(px + 14, Math.max(0, this.body.clientWidth - 240))}px`;
    this.tip.style.top = `${Math.min(py + 14, Math.max(0, this.body.clientHeight - 110))}px`;
  }

  // ---- drawing

  private draw(): void {
    const started = performance.now();
    const doc = this.doc;
    const ctx = this.canvas.getContext("2d");
    if (doc === null || ctx === null) return;
    if (this.builtVersion !== this.version) this.rebuild(doc);
    if (this.fitted) this.window = this.fullWindow();
    const { w, h: height, ratio } = sizeCanvas(this.canvas);
    const palette = readPalette(this.el);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = palette.panel;
    ctx.fillRect(0, 0, w, height);
    ctx.font = `11px ${palette.font}`;
    ctx.textBaseline = "middle";
    let drawn = 0;
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, AXIS, w, height - AXIS);
    ctx.clip();
    this.drawLaneBands(ctx, palette, w, height);
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, AXIS, w - GUTTER, height - AXIS);
    ctx.clip();
    this.drawStepLines(ctx, palette, height);
    const outline: Span[] = [];
    for (const placed of this.placed) {
      const top = placed.y - this.scrollY;
      if (top > height || top + placed.height < AXIS) continue;
      drawn += this.drawLane(ctx, palette, placed, top, outline);
    }
    this.drawOutline(ctx, palette, outline);
    const streaming = this.drawStreaming(ctx, palette, doc);
    ctx.restore();
    this.drawLaneLabels(ctx, palette, height);
    ctx.restore();
    this.drawAxis(ctx, palette, w, doc);
    const shown = this.window.t1 - this.window.t0;
    let note = `${this.spanNote}${this.spanNote ? " · " : ""}${doc.clock === "logical" ? `${shown.toFixed(1)} steps` : formatDuration(shown)} shown`;
    const lanes = this.visibleLanes(height);
    if (lanes !== null) note += ` · lanes ${lanes[0]}–${lanes[1]} of ${this.placed.length} (drag or shift+wheel)`;
    if (this.note.textContent !== note) this.note.textContent = note;
    if (this.lanes !== null && this.lanes.spanCount === 0) this.drawEmpty(ctx, palette, w, height, doc);
    this.stats.draws += 1;
    this.stats.spansDrawn = drawn;
    this.stats.lastDrawMs = performance.now() - started;
    if (streaming) this.requestDraw();
  }

  /** The first and last lane shown (1-based), or null when all are. */
  private visibleLanes(height: number): [number, number] | null {
    if (this.placed.length === 0) return null;
    let first = 0;
    let last = 0;
    this.placed.forEach((placed, i) => {
      const top = placed.y - this.scrollY;
      if (top >= AXIS - 1 && top + placed.height <= height + 1) {
        if (first === 0) first = i + 1;
        last = i + 1;
      }
    });
    return first === 1 && last === this.placed.length ? null : [first, last];
  }

  private drawLaneBands(ctx: CanvasRenderingContext2D, palette: Palette, w: number, height: number): void {
    this.placed.forEach((placed, i) => {
      const top = placed.y - this.scrollY;
      if (top > height || top + placed.height < AXIS) return;
      if (placed.lane.engine || i % 2 === 1) {
        ctx.fillStyle = palette.sunken;
        ctx.globalAlpha = placed.lane.engine ? 0.9 : 0.45;
        ctx.fillRect(0, top, w, placed.height);
        ctx.globalAlpha = 1;
      }
    });
    ctx.fillStyle = palette.border;
    ctx.fillRect(GUTTER - 1, AXIS, 1, height - AXIS);
  }

  private drawLaneLabels(ctx: CanvasRenderingContext2D, palette: Palette, height: number): void {
    for (const placed of this.placed) {
      const top = placed.y - this.scrollY;
      if (top > height || top + placed.height < AXIS) continue;
      const label = placed.lane.engine ? "engine" : oneLine(placed.lane.name, 18);
      ctx.fillStyle = placed.lane.engine ? palette.fg : palette.fg1;
      ctx.font = `${placed.lane.engine ? "600 " : ""}11px ${palette.font}`;
      ctx.fillText(label, 8, top + Math.min(placed.height, LANE) / 2 + (placed.lane.engine ? 2 : 0), GUTTER - 16);
      if (placed.lane.engine && this.doc?.header.engine) {
        ctx.fillStyle = palette.fg2;
        ctx.font = `10px ${palette.font}`;
        ctx.fillText(providerShort(this.doc.header.engine.provider), 8, top + LANE / 2 + 13, GUTTER - 16);
      }
    }
  }

  private drawStepLines(ctx: CanvasRenderingContext2D, palette: Palette, height: number): void {
    const [from, to] = markRange(this.marks, this.window);
    ctx.fillStyle = palette.border;
    for (let i = from; i < to; i++) ctx.fillRect(Math.round(this.xOf(this.marks[i].at)), AXIS, 1, height - AXIS);
  }

  private drawAxis(ctx: CanvasRenderingContext2D, palette: Palette, w: number, doc: Doc): void {
    ctx.fillStyle = palette.sunken;
    ctx.fillRect(0, 0, w, AXIS);
    ctx.fillStyle = palette.border;
    ctx.fillRect(0, AXIS - 1, w, 1);
    ctx.font = `10px ${palette.font}`;
    ctx.fillStyle = palette.fg2;
    ctx.fillText(doc.clock === "logical" ? "steps" : "time", 8, AXIS / 2);
    // Each step's number sits in the middle of its interval (previous boundary to its own).
    const [from, to] = markRange(this.marks, this.window);
    let lastLabel = -Infinity;
    ctx.textAlign = "center";
    ctx.fillStyle = palette.fg1;
    for (let i = Math.max(0, from - 1); i < Math.min(this.marks.length, to + 1); i++) {
      const end = this.xOf(this.marks[i].at);
      const begin = this.xOf(i > 0 ? this.marks[i - 1].at : doc.clock === "logical" ? this.marks[i].at - 1 : 0);
      const x = (begin + end) / 2;
      if (x < GUTTER + 8 || x > w - RIGHT_PAD - 8 || x - lastLabel < 26) continue;
      ctx.fillText(`${this.marks[i].t}`, x, AXIS / 2);
      lastLabel = x;
    }
    ctx.textAlign = "left";
  }

  private drawLane(ctx: CanvasRenderingContext2D, palette: Palette, placed: Placed, top: number, outline: Span[]): number {
    const lane = placed.lane;
    const [from, to] = visibleRange(lane, this.window.t0, this.window.t1);
    const hoveredBatch = this.hovered !== null && this.hovered.batch !== null ? batchKey(this.hovered) : null;
    let drawn = 0;
    let lastX = -1;
    let lastKind = "";
    for (let i = from; i < to; i++) {
      const span = lane.spans[i];
      const x0 = this.xOf(span.t0);
      const x1 = this.xOf(span.t1);
      const width = Math.max(1, x1 - x0);
      // Sub-pixel spans that land on the pixel just drawn add nothing visible.
      const px = Math.floor(x0);
      if (width <= 1 && px === lastX && span.kind === lastKind) continue;
      lastX = px;
      lastKind = span.kind;
      drawn += 1;
      if (lane.engine) this.drawEngineSpan(ctx, palette, span, lane.rows[i], x0, width, top, placed.height);
      else drawAgentSpan(ctx, palette, span, x0, width, top);
      if (span === this.hovered || (hoveredBatch !== null && span.batch !== null && batchKey(span) === hoveredBatch)) {
        outline.push(span);
      }
    }
    return drawn;
  }

  private drawEngineSpan(ctx: CanvasRenderingContext2D, palette: Palette, span: Span, row: number, x: number, width: number, top: number, height: number): void {
    if (span.kind === "batch") {
      ctx.fillStyle = palette.brand;
      ctx.globalAlpha = 0.08;
      ctx.fillRect(x, top + 2, width, height - 4);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = palette.brand;
      ctx.lineWidth = 1.5;
      bracket(ctx, x, top + 2, width, height - 4);
      return;
    }
    const y = top + 4 + row * ENGINE_ROW;
    fillSpan(ctx, palette, span, x, y, width, ENGINE_ROW - 2);
  }

  private drawOutline(ctx: CanvasRenderingContext2D, palette: Palette, outline: Span[]): void {
    ctx.strokeStyle = palette.fg;
    ctx.lineWidth = 1.5;
    for (const span of outline) {
      const placed = this.placed.find((p) => p.lane.name === span.lane);
      if (placed === undefined) continue;
      const x0 = this.xOf(span.t0);
      const width = Math.max(2, this.xOf(span.t1) - x0);
      const top = placed.y - this.scrollY;
      ctx.strokeRect(x0 - 0.5, top + 1.5, width + 1, placed.height - 3);
    }
  }

  private drawStreaming(ctx: CanvasRenderingContext2D, palette: Palette, doc: Doc): boolean {
    const entries = Object.entries(doc.live.streaming);
    if (entries.length === 0 || this.lanes === null) return false;
    const pulse = 0.55 + 0.45 * Math.sin(performance.now() / 160);
    for (const [agent, tokens] of entries) {
      const placed = this.placed.find((p) => p.lane.name === agent);
      if (placed === undefined) continue;
      const lane = placed.lane;
      const end = lane.spans.length > 0 ? lane.maxEnd[lane.spans.length - 1] : this.lanes.end;
      const x = Math.min(this.xOf(end), this.canvas.clientWidth - 60);
      const top = placed.y - this.scrollY;
      ctx.globalAlpha = pulse;
      ctx.fillStyle = palette.decode;
      ctx.beginPath();
      ctx.arc(x + 5, top + LANE / 2, 3.5, 0, Math.PI * 2);
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.fillStyle = palette.fg1;
      ctx.font = `10px ${palette.font}`;
      ctx.fillText(`${formatCount(tokens)} tok`, x + 12, top + LANE / 2);
    }
    return true;
  }

  private drawEmpty(ctx: CanvasRenderingContext2D, palette: Palette, w: number, height: number, doc: Doc): void {
    ctx.fillStyle = palette.fg2;
    ctx.font = `12px ${palette.font}`;
    ctx.textAlign = "center";
    const text =
      doc.steps.length === 0
        ? "No steps yet: start the run with run.start() or run.step()"
        : "No inference yet: requests appear here when agents call infer()";
    ctx.fillText(text, GUTTER + (w - GUTTER) / 2, AXIS + (height - AXIS) / 2);
    ctx.textAlign = "left";
  }
}

function key(colour: string, label: string, extra = ""): HTMLElement {
  return h("span", { class: "wb-key" }, h("span", { class: "wb-swatch", style: `background: ${colour}; ${extra}` }), label);
}

function drawAgentSpan(ctx: CanvasRenderingContext2D, palette: Palette, span: Span, x: number, width: number, top: number): void {
  if (span.kind === "step") {
    ctx.fillStyle = palette.step;
    ctx.fillRect(x, top + LANE - 6, width, 4);
    return;
  }
  if (span.kind === "queue") {
    ctx.fillStyle = palette.queue;
    ctx.fillRect(x, top + 6, width, LANE - 12);
    return;
  }
  if (span.kind === "batch") return;
  fillSpan(ctx, palette, span, x, top + 3, width, LANE - 9);
}

function fillSpan(ctx: CanvasRenderingContext2D, palette: Palette, span: Span, x: number, y: number, width: number, height: number): void {
  ctx.fillStyle = span.kind === "prefill" ? palette.prefill : span.kind === "decode" ? palette.decode : palette.queue;
  ctx.fillRect(x, y, width, height);
  if (span.kind !== "prefill" && span.kind !== "decode") return;
  if (width >= 3) {
    ctx.fillStyle = providerColour(palette, span.provider);
    ctx.fillRect(x, y, width, 2);
  }
  if (span.fallback) {
    ctx.strokeStyle = palette.error;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x + 0.75, y + 0.75, Math.max(0.5, width - 1.5), height - 1.5);
    ctx.fillStyle = palette.error;
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 6, y);
    ctx.lineTo(x, y + 6);
    ctx.fill();
  }
}

/** A square bracket on both ends joined at the top: a batch's extent on the engine lane. */
function bracket(ctx: CanvasRenderingContext2D, x: number, y: number, width: number, height: number): void {
  const lip = Math.min(4, width / 2);
  ctx.beginPath();
  ctx.moveTo(x + lip, y + height);
  ctx.lineTo(x, y + height);
  ctx.lineTo(x, y);
  ctx.lineTo(x + width, y);
  ctx.lineTo(x + width, y + height);
  ctx.lineTo(x + width - lip, y + height);
  ctx.stroke();
}

function markRange(marks: { at: number }[], window: Window): [number, number] {
  let lo = 0;
  let hi = marks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (marks[mid].at < window.t0) lo = mid + 1;
    else hi = mid;
  }
  const from = lo;
  hi = marks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (marks[mid].at <= window.t1) lo = mid + 1;
    else hi = mid;
  }
  return [from, lo];
}

/** The tooltip text of a span (agent text never appears here: only names and numbers). */
export function describeSpan(span: Span, clock: "measured" | "logical"): string {
  const lines = [`${span.kind}${span.agent ? ` · ${oneLine(span.agent, 40)}` : span.lane !== ENGINE_LANE ? ` · ${oneLine(span.lane, 40)}` : ""}`];
  lines.push(`step ${span.step}${span.batch !== null && span.batch !== undefined ? ` · batch ${span.batch}` : ""}`);
  const duration = span.t1 - span.t0;
  lines.push(
    clock === "logical"
      ? `${formatTime(span.t0, clock)} → ${formatTime(span.t1, clock)}`
      : `${formatDuration(span.t0)} → ${formatDuration(span.t1)} (${formatDuration(duration)})`,
  );
  if (span.tokens !== null && span.tokens !== undefined) lines.push(`${formatCount(span.tokens)} tokens`);
  if (span.provider) lines.push(`provider ${oneLine(span.provider, 40)}`);
  if (span.fallback) lines.push("fell back to another provider");
  return lines.join("\n");
}
