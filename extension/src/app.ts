// One view: the four panes over one store, rendered in requestAnimationFrame. It talks to a
// kernel only through `Kernel.send` (absent for an offline document).

import { ControlsView } from "./controls";
import { edgeKey, edgesInStep, graphEdges, indexAtOrBefore, splitEdgeKey, StepCursor, withLive } from "./derive";
import { type Doc, type FrontMessage, readDoc, readKernelMessage, type Step } from "./doc";
import { h } from "./dom";
import { GraphView } from "./graph";
import { InspectorView } from "./inspector";
import { applyDelta, createStore, hasLostSteps, replaceDoc, type Store } from "./store";
import { injectStyle } from "./style";
import { TimelineView } from "./timeline";

export interface Kernel {
  send(message: FrontMessage): void;
}

/** The most edges laid out; later routes are counted but not drawn. */
export const MAX_EDGES = 4000;
/** A `hello` is not repeated sooner than this while the document it asks for is on its way. */
const HELLO_RETRY_MS = 2000;
/** Replies awaited at once; older ones are forgotten (their errors still show). */
const MAX_PENDING = 64;

export interface ViewStats {
  graph: GraphView["stats"];
  timeline: TimelineView["stats"];
  seq: () => number;
  steps: () => number;
  spans: () => number;
  dropped: () => { steps: number; spans: number };
  hellos: number;
  renders: number;
}

export class App {
  readonly root: HTMLElement;
  private store: Store | null = null;
  private readonly latest = new StepCursor();
  private readonly scrub = new StepCursor();
  private readonly graph: GraphView;
  private readonly timeline: TimelineView;
  private readonly inspector: InspectorView;
  private readonly controls: ControlsView;
  private edges: [string, string][] = [];
  private edgeSet = new Set<string>();
  private channels = new Set<string>();
  /** Bumped when the agents or channels change (a new document). */
  private layoutVersion = 0;
  private dataVersion = 0;
  private selected: string | null = null;
  /** The step shown while not following the latest. */
  private seekT: number | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, string>();
  private helloSentAt = -Infinity;
  private frame = 0;
  private themeObserver: MutationObserver | null = null;
  readonly stats: ViewStats;

  constructor(
    host: HTMLElement,
    private readonly kernel: Kernel | null,
  ) {
    injectStyle(host.ownerDocument);
    this.graph = new GraphView((agent) => this.select(agent));
    this.timeline = new TimelineView();
    this.inspector = new InspectorView();
    this.controls = new ControlsView({
      control: (action) => this.send({ type: "control", id: this.id(`${action}`), action }),
      seek: (index) => this.seek(index),
      rewind: (step) => this.send({ type: "rewind", id: this.id(`rewind to step ${step}`), step }),
      fork: (step) => this.send({ type: "fork", id: this.id(`fork at step ${step}`), step }),
    });
    this.root = h(
      "div",
      { class: "wb-views" },
      this.controls.el,
      h("div", { class: "wb-row" }, this.graph.el, this.inspector.el),
      this.timeline.el,
    );
    host.appendChild(this.root);
    // JupyterLab switches themes by attributes on <body>: canvases redraw in the new colours.
    const body = host.ownerDocument.body;
    if (typeof MutationObserver !== "undefined" && body) {
      this.themeObserver = new MutationObserver(() => {
        this.graph.redraw();
        this.timeline.requestDraw();
      });
      this.themeObserver.observe(body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name", "class", "style"] });
    }
    this.stats = {
      graph: this.graph.stats,
      timeline: this.timeline.stats,
      seq: () => this.store?.doc.seq ?? -1,
      steps: () => this.store?.doc.steps.length ?? 0,
      spans: () => this.store?.doc.spans.length ?? 0,
      dropped: () => ({ ...(this.store?.dropped ?? { steps: 0, spans: 0 }) }),
      hellos: 0,
      renders: 0,
    };
    Object.defineProperty(this.root, "wbViews", { value: this.stats, enumerable: false });
    this.render();
  }

  /** A new value of the `doc` traitlet (or the offline document): taken when it is newer than
   * what the deltas already brought. Returns false for a value that is no document. */
  setDocValue(value: unknown): boolean {
    const doc = readDoc(value);
    if (doc === null) return false;
    if (this.store !== null && doc.seq <= this.store.doc.seq) return true;
    this.takeDoc(doc);
    return true;
  }

  /** A custom message from the kernel. Anything unknown is ignored. */
  onMessage(raw: unknown): void {
    const message = readKernelMessage(raw);
    if (message === null) return;
    if (message.type === "doc") {
      this.takeDoc(message.doc);
      return;
    }
    if (message.type === "reply") {
      this.onReply(message.id, message.ok, message.error);
      return;
    }
    if (this.store === null) {
      this.hello();
      return;
    }
    const outcome = applyDelta(this.store, message);
    if (outcome.kind === "gap") {
      this.hello();
      return;
    }
    if (outcome.kind === "stale") return;
    this.dataVersion += 1;
    this.addRoutes(outcome.newSteps);
    if (this.seekT === null && outcome.newSteps.length > 0) {
      const keys = new Set<string>();
      for (const step of outcome.newSteps) for (const key of edgesInStep(step)) keys.add(key);
      if (keys.size > 0) this.graph.pulse(keys);
    }
    this.schedule();
  }

  /** Asks the kernel for the whole document (at most once per HELLO_RETRY_MS). */
  hello(): void {
    if (this.kernel === null) return;
    const now = performance.now();
    if (now - this.helloSentAt < HELLO_RETRY_MS) return;
    this.helloSentAt = now;
    this.stats.hellos += 1;
    this.send({ type: "hello", id: this.id("reload") });
  }

  destroy(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.themeObserver?.disconnect();
    this.graph.destroy();
    this.timeline.destroy();
    this.root.remove();
  }

  // ---- state changes

  private takeDoc(doc: Doc): void {
    if (this.store === null) this.store = createStore(doc);
    else replaceDoc(this.store, doc);
    this.helloSentAt = -Infinity;
    this.dataVersion += 1;
    const names = new Set(doc.header.agents.map((a) => a.name));
    if (this.selected !== null && !names.has(this.selected)) this.selected = null;
    // After a rewind to the step shown, that step is the last: follow the run from there.
    const last = doc.steps[doc.steps.length - 1];
    if (this.seekT !== null && (last === undefined || this.seekT >= last.t)) this.seekT = null;
    this.channels = new Set(doc.header.channels.map(([from, to]) => edgeKey(from, to)));
    const { edges } = graphEdges(doc, MAX_EDGES);
    this.edges = edges;
    this.edgeSet = new Set(edges.map(([from, to]) => edgeKey(from, to)));
    this.layoutVersion += 1;
    this.schedule();
  }

  private addRoutes(steps: Step[]): void {
    if (this.store === null) return;
    const names = new Set<string>();
    for (const step of steps) {
      for (const key of edgesInStep(step)) {
        if (this.edgeSet.has(key) || this.edges.length >= MAX_EDGES) continue;
        const [from, to] = splitEdgeKey(key);
        if (names.size === 0) for (const agent of this.store.doc.header.agents) names.add(agent.name);
        if (!names.has(from) || !names.has(to)) continue;
        this.edgeSet.add(key);
        this.edges.push([from, to]);
      }
    }
  }

  private select(agent: string | null): void {
    this.selected = agent;
    this.schedule();
  }

  private seek(index: number | null): void {
    const steps = this.store?.doc.steps ?? [];
    this.seekT = index === null || index >= steps.length - 1 || index < 0 ? null : steps[index].t;
    this.schedule();
  }

  private id(what: string): number {
    const id = this.nextId++;
    this.pending.set(id, what);
    if (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value as number);
    return id;
  }

  private send(message: FrontMessage): void {
    if (this.kernel === null) return;
    try {
      this.kernel.send(message);
    } catch (error) {
      this.pending.delete(message.id);
      this.controls.showError(`Could not reach the kernel: ${String(error)}`);
    }
  }

  private onReply(id: number | null, ok: boolean, error: string | null): void {
    const what = id === null ? undefined : this.pending.get(id);
    if (id !== null) this.pending.delete(id);
    if (!ok) this.controls.showError(`${what ?? "request"} failed: ${error ?? "no reason given"}`);
  }

  // ---- rendering

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    this.stats.renders += 1;
    const store = this.store;
    const doc = store?.doc ?? emptyDoc();
    const generation = store?.generation ?? -1;
    const following = this.seekT === null;
    const index = following ? doc.steps.length - 1 : indexAtOrBefore(doc.steps, this.seekT as number);
    const t = index >= 0 ? doc.steps[index].t : -1;
    const cursor = following ? this.latest : this.scrub;
    cursor.moveTo(doc, generation, following ? Infinity : t);
    const statuses = withLive(cursor.agents, following ? doc.live : null);
    this.graph.update({
      doc,
      layoutKey: `${generation}:${this.layoutVersion}`,
      edges: this.edges,
      channels: this.channels,
      views: cursor.agents,
      statuses,
      counts: cursor.edges,
      selected: this.selected,
      loading: store === null,
    });
    const lostSteps = store !== null && hasLostSteps(store);
    this.inspector.update(
      { doc, agent: this.selected, step: t, status: this.selected === null ? null : (statuses.get(this.selected) ?? null), lostSteps },
      `${generation}:${index}`,
    );
    this.controls.update({
      doc,
      kernel: this.kernel !== null,
      loading: store === null,
      index,
      following,
      agentsTotal: doc.header.agents.length,
      dropped: store?.dropped ?? { steps: 0, spans: 0 },
    });
    this.timeline.update(doc, this.dataVersion);
  }
}

export function emptyDoc(): Doc {
  return {
    format: 1,
    seq: 0,
    source: "live",
    title: "",
    clock: "measured",
    header: { seed: 0, policy: "", max_batch: 1, engine: null, agents: [], channels: [] },
    steps: [],
    spans: [],
    status: { state: "idle", step: -1, reason: null },
    live: { running: [], waiting: [], streaming: {} },
    trimmed: { steps: 0, spans: 0 },
  };
}
