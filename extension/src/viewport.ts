// Pan and zoom of a 2-D drawing: content coordinates to pane pixels. No DOM here.

export const MIN_SCALE = 0.02;
export const MAX_SCALE = 4;

export interface Viewport {
  scale: number;
  x: number;
  y: number;
}

/** The viewport that shows the whole content centred in the pane, never above `maxScale`. */
export function fit(contentW: number, contentH: number, paneW: number, paneH: number, margin: number, maxScale = 1): Viewport {
  const scale = clamp(Math.min((paneW - 2 * margin) / contentW, (paneH - 2 * margin) / contentH, maxScale));
  return { scale, x: (paneW - contentW * scale) / 2, y: (paneH - contentH * scale) / 2 };
}

/** Zooms by `factor` keeping the content under pane point (px, py) in place. */
export function zoomAt(view: Viewport, px: number, py: number, factor: number): Viewport {
  const scale = clamp(view.scale * factor);
  const k = scale / view.scale;
  return { scale, x: px - (px - view.x) * k, y: py - (py - view.y) * k };
}

export function toContent(view: Viewport, px: number, py: number): { x: number; y: number } {
  return { x: (px - view.x) / view.scale, y: (py - view.y) / view.scale };
}

function clamp(scale: number): number {
  if (!Number.isFinite(scale) || scale <= 0) return 1;
  return Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
}
