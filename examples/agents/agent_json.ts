// A small JSON value type for AssemblyScript agents: parse the step input, build the output.
//
// Not an agent itself (it exports nothing); greeter.ts imports it. Malformed input throws,
// which in an agent built with `--use abort=` is a trap: the host reports a fault.

export const enum Kind { Null, Bool, Num, Str, Arr, Obj }

const MAX_DEPTH = 64; // deeper input is refused instead of exhausting the stack

export class Value {
  kind: Kind;
  flag: bool = false;          // Bool
  num: f64 = 0;                // Num
  text: string = "";           // Str
  items: Value[] = [];         // Arr, or the values of an Obj
  keys: string[] = [];         // Obj keys, in insertion order

  constructor(kind: Kind) { this.kind = kind; }

  static nul(): Value { return new Value(Kind.Null); }
  static bool(flag: bool): Value { const v = new Value(Kind.Bool); v.flag = flag; return v; }
  static num(n: f64): Value { const v = new Value(Kind.Num); v.num = n; return v; }
  static str(s: string): Value { const v = new Value(Kind.Str); v.text = s; return v; }
  static arr(): Value { return new Value(Kind.Arr); }
  static obj(): Value { return new Value(Kind.Obj); }

  /** The member `key` of an object, or null (also when this is not an object). */
  get(key: string): Value | null {
    if (this.kind != Kind.Obj) return null;
    const i = this.keys.indexOf(key);
    return i < 0 ? null : this.items[i];
  }

  /** Sets (or replaces) member `key`; returns this for chaining. */
  set(key: string, value: Value): Value {
    const i = this.keys.indexOf(key);
    if (i >= 0) { this.items[i] = value; return this; }
    this.keys.push(key);
    this.items.push(value);
    return this;
  }

  push(value: Value): Value { this.items.push(value); return this; }

  /** The string value, or `fallback` when this is not a string. */
  str(fallback: string = ""): string { return this.kind == Kind.Str ? this.text : fallback; }

  /** The number value, or `fallback` when this is not a number. */
  number(fallback: f64 = 0): f64 { return this.kind == Kind.Num ? this.num : fallback; }

  /** The number value truncated to an integer, or `fallback` when this is not a number. */
  integer(fallback: i64 = 0): i64 { return this.kind == Kind.Num ? <i64>this.num : fallback; }
}

// --- reading -----------------------------------------------------------------------------

class Reader {
  pos: i32 = 0;
  constructor(public src: string) {}

  fail(what: string): void { throw new Error("bad JSON at " + this.pos.toString() + ": " + what); }

  peek(): i32 { return this.pos < this.src.length ? this.src.charCodeAt(this.pos) : -1; }

  skipSpace(): void {
    while (true) {
      const c = this.peek();
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) return;
      this.pos++;
    }
  }

  expect(word: string): void {
    if (this.src.substr(this.pos, word.length) != word) this.fail("expected " + word);
    this.pos += word.length;
  }

  value(depth: i32): Value {
    if (depth > MAX_DEPTH) this.fail("nested too deeply");
    this.skipSpace();
    const c = this.peek();
    if (c == 0x7b) return this.object(depth);          // {
    if (c == 0x5b) return this.array(depth);           // [
    if (c == 0x22) return Value.str(this.string());    // "
    if (c == 0x74) { this.expect("true"); return Value.bool(true); }
    if (c == 0x66) { this.expect("false"); return Value.bool(false); }
    if (c == 0x6e) { this.expect("null"); return Value.nul(); }
    return this.number();
  }

  object(depth: i32): Value {
    const out = Value.obj();
    this.pos++;
    this.skipSpace();
    if (this.peek() == 0x7d) { this.pos++; return out; }
    while (true) {
      this.skipSpace();
      if (this.peek() != 0x22) this.fail("expected a key");
      const key = this.string();
      this.skipSpace();
      this.expect(":");
      out.set(key, this.value(depth + 1));
      this.skipSpace();
      if (this.peek() == 0x2c) { this.pos++; continue; }
      this.expect("}");
      return out;
    }
  }

  array(depth: i32): Value {
    const out = Value.arr();
    this.pos++;
    this.skipSpace();
    if (this.peek() == 0x5d) { this.pos++; return out; }
    while (true) {
      out.push(this.value(depth + 1));
      this.skipSpace();
      if (this.peek() == 0x2c) { this.pos++; continue; }
      this.expect("]");
      return out;
    }
  }

  string(): string {
    this.pos++; // opening quote
    let out = "";
    let start = this.pos;
    while (true) {
      const c = this.peek();
      if (c < 0) this.fail("unterminated string");
      if (c == 0x22) break;
      if (c != 0x5c) { this.pos++; continue; }
      out += this.src.substring(start, this.pos);
      out += this.escape();
      start = this.pos;
    }
    out += this.src.substring(start, this.pos);
    this.pos++; // closing quote
    return out;
  }

  escape(): string {
    const c = this.src.charCodeAt(this.pos + 1);
    this.pos += 2;
    if (c == 0x6e) return "\n";
    if (c == 0x74) return "\t";
    if (c == 0x72) return "\r";
    if (c == 0x62) return "\b";
    if (c == 0x66) return "\f";
    if (c == 0x75) {                                  // \uXXXX: one UTF-16 code unit
      const unit = I32.parseInt(this.src.substr(this.pos, 4), 16);
      this.pos += 4;
      return String.fromCharCode(unit);
    }
    return String.fromCharCode(c);                    // \" \\ \/
  }

  number(): Value {
    const start = this.pos;
    while (true) {
      const c = this.peek();
      const numeric = (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e
        || c == 0x65 || c == 0x45;
      if (!numeric) break;
      this.pos++;
    }
    if (this.pos == start) this.fail("unexpected character");
    return Value.num(F64.parseFloat(this.src.substring(start, this.pos)));
  }
}

/** Parses `text`; throws (traps) on malformed JSON or nesting deeper than 64. */
export function parse(text: string): Value {
  const reader = new Reader(text);
  const value = reader.value(0);
  reader.skipSpace();
  if (reader.pos != text.length) reader.fail("trailing characters");
  return value;
}

// --- writing -----------------------------------------------------------------------------

/** Canonical-enough JSON text: integers print without a fraction, strings are escaped. */
export function stringify(v: Value): string {
  if (v.kind == Kind.Null) return "null";
  if (v.kind == Kind.Bool) return v.flag ? "true" : "false";
  if (v.kind == Kind.Num) return numberText(v.num);
  if (v.kind == Kind.Str) return quote(v.text);
  const parts = new Array<string>();
  for (let i = 0; i < v.items.length; i++) {
    const item = stringify(v.items[i]);
    parts.push(v.kind == Kind.Obj ? quote(v.keys[i]) + ":" + item : item);
  }
  return v.kind == Kind.Obj ? "{" + parts.join(",") + "}" : "[" + parts.join(",") + "]";
}

function numberText(n: f64): string {
  if (!isFinite(n)) return "null"; // JSON has no NaN or infinity
  if (n == Math.floor(n) && Math.abs(n) < 9007199254740992) return (<i64>n).toString();
  return n.toString();
}

function quote(s: string): string {
  let out = "\"";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + "\"";
}
