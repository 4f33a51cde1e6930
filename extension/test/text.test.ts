import assert from "node:assert/strict";
import { test } from "node:test";
import { displayText, formatBytes, formatCount, jsonLine, oneLine, stripAnsi } from "../src/text";

test("terminal escapes and control characters are stripped, newlines and tabs kept", () => {
  assert.equal(stripAnsi("\u001b[1;31mred\u001b[0m plain"), "red plain");
  assert.equal(stripAnsi("a\u001b]8;;javascript:alert(1)\u0007link\u001b]8;;\u0007b"), "alinkb");
  assert.equal(stripAnsi("x\u009b2Jy\u0000z\u0007"), "xyz");
  assert.equal(stripAnsi("line\n\ttab"), "line\n\ttab");
});

test("display text is cut with a note of what was cut", () => {
  assert.equal(displayText("abcdef", 3), "abc… (3 more characters)");
  assert.equal(displayText(42), "42");
});

test("one-line labels collapse whitespace and end in an ellipsis when cut", () => {
  assert.equal(oneLine("  a \n b  "), "a b");
  assert.equal(oneLine("abcdefgh", 5), "abcd…");
});

test("jsonLine never throws, even on cycles", () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.equal(jsonLine(cyclic), "[object Object]");
  assert.equal(jsonLine({ a: [1, "x"] }), '{"a":[1,"x"]}');
});

test("number formats", () => {
  assert.equal(formatCount(999), "999");
  assert.equal(formatCount(12345), "12.3k");
  assert.equal(formatCount(5_000_000), "5.0M");
  assert.equal(formatBytes(2 * 1048576 + 65536 * 8), "2.5 MiB");
  assert.equal(formatBytes(512), "512 B");
});
