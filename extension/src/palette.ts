// Colours for canvas drawing, read from the stylesheet's custom properties so the canvas
// follows the same theme as the DOM.

import type { AgentStatus } from "./doc";
import { cssVar } from "./dom";

export const STATUSES: AgentStatus[] = ["ready", "running", "waiting", "idle", "done", "faulted"];

export const STATUS_LABEL: Record<AgentStatus, string> = {
  ready: "ready",
  running: "running",
  waiting: "waiting on model",
  idle: "idle",
  done: "done",
  faulted: "faulted",
};

export interface Palette {
  bg: string;
  panel: string;
  sunken: string;
  fg: string;
  fg1: string;
  fg2: string;
  border: string;
  brand: string;
  error: string;
  warn: string;
  font: string;
  mono: string;
  status: Record<AgentStatus, string>;
  step: string;
  queue: string;
  prefill: string;
  decode: string;
  cuda: string;
  cpu: string;
}

export function readPalette(el: Element): Palette {
  const v = (name: string, fallback: string): string => cssVar(el, name, fallback);
  return {
    bg: v("--wb-bg", "#ffffff"),
    panel: v("--wb-panel", "#ffffff"),
    sunken: v("--wb-sunken", "#eef0f3"),
    fg: v("--wb-fg", "#1b1f24"),
    fg1: v("--wb-fg1", "#2f353d"),
    fg2: v("--wb-fg2", "#68707c"),
    border: v("--wb-border", "#cfd4db"),
    brand: v("--wb-brand", "#1f6feb"),
    error: v("--wb-error", "#d1242f"),
    warn: v("--wb-warn", "#d97706"),
    font: v("--wb-font", "sans-serif"),
    mono: v("--wb-mono", "monospace"),
    status: {
      ready: v("--wb-st-ready", "#3b82c4"),
      running: v("--wb-st-running", "#e0a31a"),
      waiting: v("--wb-st-waiting", "#8b5cf6"),
      idle: v("--wb-st-idle", "#8b95a5"),
      done: v("--wb-st-done", "#1a7f37"),
      faulted: v("--wb-st-faulted", "#d1242f"),
    },
    step: v("--wb-tl-step", "rgba(125,137,156,0.35)"),
    queue: v("--wb-tl-queue", "rgba(139,149,165,0.55)"),
    prefill: v("--wb-tl-prefill", "#e8892b"),
    decode: v("--wb-tl-decode", "#3d8bd9"),
    cuda: v("--wb-tl-cuda", "#22a06b"),
    cpu: v("--wb-tl-cpu", "#8b95a5"),
  };
}

/** The colour of a provider mark: CUDA/GPU providers green, CPU grey, others the brand. */
export function providerColour(palette: Palette, provider: string | null): string {
  if (provider === null) return palette.cpu;
  const name = provider.toLowerCase();
  if (name.includes("cpu")) return palette.cpu;
  if (name.includes("cuda") || name.includes("tensorrt") || name.includes("rocm")) return palette.cuda;
  return palette.brand;
}

export function providerShort(provider: string | null): string {
  if (provider === null) return "";
  return provider.replace(/ExecutionProvider$/, "").toUpperCase();
}
