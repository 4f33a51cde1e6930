// Agent text for display, and number formats. No DOM here.
//
// Agent text is shown only through textContent (or canvas fillText); here it loses terminal
// escape sequences and other control characters, and is cut to a stated length.

// CSI (ESC [ ... final, or the one-byte C1 CSI), OSC (ESC ] ... BEL or ESC \), other
// two-character escapes, then any C0/C1 control character left but tab and newline.
const ANSI =
  /\u001b\[[0-?]*[ -/]*[@-~]|\u009b[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[@-Z\\-_]|[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

/** Display text: escapes stripped, cut to `max` characters with a note of what was cut. */
export function displayText(value: unknown, max = 2000): string {
  const text = stripAnsi(typeof value === "string" ? value : String(value));
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

/** A one-line form for labels: whitespace runs become one space, cut to `max`. */
export function oneLine(value: unknown, max = 80): string {
  const text = stripAnsi(typeof value === "string" ? value : String(value)).replace(/\s+/g, " ").trim();
  return text.length <= max ? text : `${text.slice(0, Math.max(1, max - 1))}…`;
}

/** Compact JSON for one line (payloads in lists), cut to `max`. Never throws. */
export function jsonLine(value: unknown, max = 120): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return oneLine(text, max);
}

export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(abs >= 1e10 ? 0 : 1)}G`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(abs >= 1e7 ? 0 : 1)}M`;
  if (abs >= 1e4) return `${(n / 1e3).toFixed(abs >= 1e5 ? 0 : 1)}k`;
  return String(Math.round(n));
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "–";
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(n >= 10 << 10 ? 0 : 1)} KiB`;
  return `${n} B`;
}

/** A time on the timeline's clock: seconds (measured) or steps (logical). */
export function formatTime(t: number, clock: "measured" | "logical"): string {
  if (clock === "logical") return `step ${Number.isInteger(t) ? t : t.toFixed(2)}`;
  return formatDuration(t);
}

export function formatDuration(seconds: number): string {
  const abs = Math.abs(seconds);
  if (abs < 1e-3) return `${(seconds * 1e6).toFixed(0)} µs`;
  if (abs < 1) return `${(seconds * 1e3).toFixed(abs < 0.01 ? 2 : abs < 0.1 ? 1 : 0)} ms`;
  if (abs < 60) return `${seconds.toFixed(abs < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(abs / 60);
  return `${seconds < 0 ? "-" : ""}${minutes} min ${(abs - minutes * 60).toFixed(0)} s`;
}
