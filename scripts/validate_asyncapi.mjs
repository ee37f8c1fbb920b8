// Validates an AsyncAPI document with the official parser (@asyncapi/parser): prints every
// diagnostic, exits 1 when one is an error (severity 0), 2 on usage errors.
// Usage: NODE_PATH=<dir>/node_modules node scripts/validate_asyncapi.mjs deploy/asyncapi.yaml
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const file = process.argv[2];
if (!file) {
  console.error("usage: validate_asyncapi.mjs <asyncapi.yaml>");
  process.exit(2);
}
// ES modules ignore NODE_PATH: resolve the parser from the folder it was installed in
const require = createRequire(join(process.env.ASYNCAPI_PARSER_DIR || process.cwd(), "package.json"));
const { Parser } = require("@asyncapi/parser");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
const names = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  console.log(`${names[d.severity] ?? d.severity}: ${d.code}: ${d.message} at ${(d.path || []).join(".")}`);
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (errors.length || !document) {
  console.log(`${file}: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()} (${diagnostics.length} non-error diagnostics)`);
