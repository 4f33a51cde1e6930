// Runs the compiled unit tests (build/test/*.test.mjs) with node's test runner.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "build", "test");
const files = readdirSync(dir).filter((name) => name.endsWith(".test.mjs")).sort().map((name) => join(dir, name));
if (files.length === 0) {
  console.error(`no tests in ${dir}`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
process.exit(result.status ?? 1);
