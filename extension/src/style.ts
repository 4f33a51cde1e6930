// The views' stylesheet, injected once per document by the bundle. Colours come from
// JupyterLab's theme variables (light and dark), with fallbacks for a standalone page.

export const CSS = `
.wb-views {
  --wb-bg: var(--jp-layout-color0, #ffffff);
  --wb-panel: var(--jp-layout-color1, #ffffff);
  --wb-sunken: var(--jp-layout-color2, #eef0f3);
  --wb-fg: var(--jp-ui-font-color0, #1b1f24);
  --wb-fg1: var(--jp-ui-font-color1, #2f353d);
  --wb-fg2: var(--jp-ui-font-color2, #68707c);
  --wb-border: var(--jp-border-color1, #cfd4db);
  --wb-brand: var(--jp-brand-color1, #1f6feb);
  --wb-error: var(--jp-error-color1, #d1242f);
  --wb-warn: var(--jp-warn-color1, #d97706);
  --wb-success: var(--jp-success-color1, #1a7f37);
  --wb-font: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  --wb-mono: var(--jp-code-font-family, ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace);
  --wb-st-ready: #3b82c4;
  --wb-st-idle: #8b95a5;
  --wb-st-running: #e0a31a;
  --wb-st-waiting: #8b5cf6;
  --wb-st-done: var(--wb-success);
  --wb-st-faulted: var(--wb-error);
  --wb-tl-step: rgba(125, 137, 156, 0.35);
  --wb-tl-queue: rgba(139, 149, 165, 0.55);
  --wb-tl-prefill: #e8892b;
  --wb-tl-decode: #3d8bd9;
  --wb-tl-cuda: #22a06b;
  --wb-tl-cpu: #8b95a5;
  box-sizing: border-box;
  display: flex;
  flex-direction: column;
  gap: 8px;
  width: 100%;
  min-width: 640px;
  padding: 8px;
  color: var(--wb-fg1);
  background: var(--wb-bg);
  font-family: var(--wb-font);
  font-size: 12px;
  line-height: 1.4;
  border: 1px solid var(--wb-border);
  border-radius: 6px;
}
.wb-views *, .wb-views *::before, .wb-views *::after { box-sizing: border-box; }
.wb-pane {
  position: relative;
  background: var(--wb-panel);
  border: 1px solid var(--wb-border);
  border-radius: 5px;
  overflow: hidden;
}
.wb-pane-head {
  display: flex;
  align-items: center;
  gap: 10px;
  height: 28px;
  padding: 0 10px;
  border-bottom: 1px solid var(--wb-border);
  background: var(--wb-sunken);
  color: var(--wb-fg2);
  white-space: nowrap;
  overflow: hidden;
}
.wb-pane-title { font-weight: 600; color: var(--wb-fg); letter-spacing: 0.01em; }
.wb-legend { display: flex; gap: 10px; align-items: center; overflow: hidden; }
.wb-key { display: inline-flex; align-items: center; gap: 4px; }
.wb-swatch { width: 9px; height: 9px; border-radius: 2px; display: inline-block; }
.wb-dot { width: 8px; height: 8px; border-radius: 50%; display: inline-block; }
.wb-spacer { flex: 1; }
.wb-muted { color: var(--wb-fg2); }
.wb-row { display: flex; gap: 8px; min-height: 0; }

/* controls */
.wb-controls { height: 96px; padding: 8px 10px; display: grid; grid-template-rows: 26px 26px 22px; gap: 4px; }
.wb-bar { display: flex; align-items: center; gap: 8px; min-width: 0; white-space: nowrap; }
.wb-title { font-weight: 600; color: var(--wb-fg); overflow: hidden; text-overflow: ellipsis; max-width: 40%; }
.wb-status { display: inline-flex; align-items: center; gap: 6px; color: var(--wb-fg1); overflow: hidden; text-overflow: ellipsis; }
.wb-pill {
  display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: 11px;
  color: #fff; background: var(--wb-st-idle);
}
.wb-pill[data-state="running"] { background: var(--wb-st-running); }
.wb-pill[data-state="pausing"] { background: var(--wb-st-running); opacity: 0.7; }
.wb-pill[data-state="paused"] { background: var(--wb-st-ready); }
.wb-pill[data-state="finished"] { background: var(--wb-success); }
.wb-pill[data-state="closed"] { background: var(--wb-fg2); }
.wb-pill[data-state="journal"] { background: var(--wb-fg2); }
.wb-btn {
  font: inherit; font-size: 12px; height: 24px; padding: 0 10px; border-radius: 4px; cursor: pointer;
  border: 1px solid var(--wb-border); background: var(--wb-panel); color: var(--wb-fg1);
}
.wb-btn:hover:not(:disabled) { border-color: var(--wb-brand); color: var(--wb-brand); }
.wb-btn:disabled { opacity: 0.45; cursor: default; }
.wb-btn.wb-primary { background: var(--wb-brand); border-color: var(--wb-brand); color: #fff; }
.wb-btn.wb-primary:hover:not(:disabled) { color: #fff; filter: brightness(1.08); }
.wb-btn.wb-danger { background: var(--wb-error); border-color: var(--wb-error); color: #fff; }
.wb-btn.wb-danger:hover:not(:disabled) { color: #fff; filter: brightness(1.08); }
.wb-slider { flex: 1; min-width: 120px; accent-color: var(--wb-brand); }
.wb-steplabel { min-width: 118px; text-align: right; font-variant-numeric: tabular-nums; color: var(--wb-fg1); }
.wb-notice { display: flex; align-items: center; gap: 8px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.wb-notice[data-kind="error"] { color: var(--wb-error); }
.wb-notice[data-kind="confirm"] { color: var(--wb-fg); }
.wb-notice[data-kind="info"] { color: var(--wb-fg2); }

/* graph + inspector */
.wb-graph { flex: 1; height: 400px; min-width: 0; display: flex; flex-direction: column; }
.wb-graph-body { position: relative; flex: 1; min-height: 0; cursor: grab; user-select: none; }
.wb-graph-body.wb-dragging { cursor: grabbing; }
.wb-graph-body svg, .wb-graph-body canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; }
.wb-empty {
  position: absolute; inset: 0; display: flex; flex-direction: column; align-items: center; justify-content: center;
  gap: 6px; color: var(--wb-fg2); text-align: center; padding: 16px; pointer-events: none;
}
.wb-empty b { color: var(--wb-fg1); font-weight: 600; }
.wb-empty code { font-family: var(--wb-mono); background: var(--wb-sunken); padding: 1px 5px; border-radius: 3px; color: var(--wb-fg); }
.wb-node { cursor: pointer; }
.wb-node rect.wb-card { fill: var(--wb-panel); stroke: var(--wb-border); stroke-width: 1; }
.wb-node:hover rect.wb-card { stroke: var(--wb-fg2); }
.wb-node.wb-selected rect.wb-card { stroke: var(--wb-brand); stroke-width: 2; }
.wb-node text { font-family: var(--wb-font); fill: var(--wb-fg1); font-size: 11px; }
.wb-node text.wb-name { font-weight: 600; fill: var(--wb-fg); font-size: 12px; }
.wb-node text.wb-meta { fill: var(--wb-fg2); font-size: 10.5px; font-variant-numeric: tabular-nums; }
.wb-node text.wb-badge-text { font-size: 9px; font-weight: 700; fill: var(--wb-fg2); letter-spacing: 0.04em; }
.wb-node rect.wb-badge { fill: var(--wb-sunken); stroke: var(--wb-border); }
.wb-node[data-status="running"] rect.wb-bar, .wb-node[data-status="waiting"] rect.wb-bar { animation: wb-breathe 1.2s ease-in-out infinite; }
@keyframes wb-breathe { 50% { opacity: 0.45; } }
.wb-node[data-status="ready"] .wb-bar, .wb-node[data-status="ready"] .wb-status-dot { fill: var(--wb-st-ready); }
.wb-node[data-status="idle"] .wb-bar, .wb-node[data-status="idle"] .wb-status-dot { fill: var(--wb-st-idle); }
.wb-node[data-status="running"] .wb-bar, .wb-node[data-status="running"] .wb-status-dot { fill: var(--wb-st-running); }
.wb-node[data-status="waiting"] .wb-bar, .wb-node[data-status="waiting"] .wb-status-dot { fill: var(--wb-st-waiting); }
.wb-node[data-status="done"] .wb-bar, .wb-node[data-status="done"] .wb-status-dot { fill: var(--wb-st-done); }
.wb-node[data-status="faulted"] .wb-bar, .wb-node[data-status="faulted"] .wb-status-dot { fill: var(--wb-st-faulted); }
.wb-node text.wb-status-text { fill: var(--wb-fg1); }
.wb-edge path { fill: none; stroke: var(--wb-fg2); stroke-opacity: 0.55; stroke-width: 1.3; }
.wb-edge.wb-route path { stroke-dasharray: 4 3; }
.wb-edge.wb-active path { stroke: var(--wb-brand); stroke-opacity: 0.9; }
.wb-edge text { font-family: var(--wb-font); font-size: 10px; fill: var(--wb-fg2); paint-order: stroke; stroke: var(--wb-panel); stroke-width: 3px; font-variant-numeric: tabular-nums; }
.wb-arrow { fill: var(--wb-fg2); fill-opacity: 0.7; }
.wb-pulse { fill: var(--wb-brand); }
.wb-graph-tools { position: absolute; right: 8px; bottom: 8px; display: flex; gap: 4px; }
.wb-tip {
  position: absolute; z-index: 5; pointer-events: none; max-width: 340px; padding: 6px 8px; border-radius: 4px;
  background: var(--wb-fg); color: var(--wb-bg); font-size: 11px; line-height: 1.35; white-space: pre-wrap;
  box-shadow: 0 2px 8px rgba(0, 0, 0, 0.25); display: none;
}

.wb-inspector { width: 380px; flex: none; height: 400px; display: flex; flex-direction: column; }
.wb-inspector-body { flex: 1; overflow: auto; padding: 8px 10px; }
.wb-section { margin: 0 0 10px 0; }
.wb-section-title {
  display: flex; align-items: baseline; gap: 6px; font-size: 11px; font-weight: 700; text-transform: uppercase;
  letter-spacing: 0.05em; color: var(--wb-fg2); margin: 0 0 4px 0;
}
.wb-note { color: var(--wb-warn); font-size: 11px; margin: 2px 0 4px; }
.wb-fault { border-left: 3px solid var(--wb-error); background: var(--wb-sunken); padding: 4px 8px; margin: 3px 0; white-space: pre-wrap; word-break: break-word; }
.wb-fault b { color: var(--wb-error); }
.wb-list { margin: 0; padding: 0; list-style: none; }
.wb-list li { padding: 3px 0; border-bottom: 1px dashed var(--wb-border); overflow-wrap: anywhere; }
.wb-list li:last-child { border-bottom: none; }
.wb-mono { font-family: var(--wb-mono); font-size: 11px; }
.wb-pre { font-family: var(--wb-mono); font-size: 11px; white-space: pre-wrap; word-break: break-word; margin: 2px 0; color: var(--wb-fg1); }
.wb-kv { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; }
.wb-kv span:nth-child(odd) { color: var(--wb-fg2); }
.wb-agent-head { display: flex; align-items: center; gap: 8px; margin-bottom: 8px; }
.wb-agent-name { font-size: 14px; font-weight: 600; color: var(--wb-fg); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.wb-tag { font-size: 10px; font-weight: 700; padding: 1px 5px; border-radius: 3px; border: 1px solid var(--wb-border); color: var(--wb-fg2); background: var(--wb-sunken); }
.wb-status-tag { font-size: 10px; font-weight: 700; padding: 1px 6px; border-radius: 8px; color: #fff; }

/* JSON tree */
.wb-json { font-family: var(--wb-mono); font-size: 11px; color: var(--wb-fg1); }
.wb-json details { margin-left: 12px; }
.wb-json details > summary { margin-left: -12px; cursor: pointer; list-style: none; }
.wb-json details > summary::before { content: "▸"; display: inline-block; width: 12px; color: var(--wb-fg2); }
.wb-json details[open] > summary::before { content: "▾"; }
.wb-json .wb-leaf { margin-left: 12px; white-space: pre-wrap; word-break: break-word; }
.wb-json .wb-k { color: var(--wb-fg); }
.wb-json .wb-s { color: #2f8f5b; }
.wb-json .wb-n { color: #3b82c4; }
.wb-json .wb-b { color: #b45fb0; }
.wb-json .wb-z { color: var(--wb-fg2); }
[data-jp-theme-light="false"] .wb-json .wb-s, .wb-dark .wb-json .wb-s { color: #7cc89b; }
[data-jp-theme-light="false"] .wb-json .wb-n, .wb-dark .wb-json .wb-n { color: #79b0e8; }
[data-jp-theme-light="false"] .wb-json .wb-b, .wb-dark .wb-json .wb-b { color: #d79bd3; }

/* timeline */
.wb-timeline { height: 300px; display: flex; flex-direction: column; }
.wb-timeline-body { position: relative; flex: 1; min-height: 0; cursor: crosshair; user-select: none; }
.wb-timeline-body.wb-dragging { cursor: grabbing; }
.wb-timeline-body canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; }
`;

let injected = new WeakSet<Document>();

/** Adds the stylesheet to `doc` once. */
export function injectStyle(doc: Document): void {
  if (injected.has(doc) || doc.getElementById("wb-views-style")) {
    injected.add(doc);
    return;
  }
  const style = doc.createElement("style");
  style.id = "wb-views-style";
  style.textContent = CSS;
  doc.head.appendChild(style);
  injected.add(doc);
}

/** For tests that swap documents. */
export function resetInjected(): void {
  injected = new WeakSet<Document>();
}
