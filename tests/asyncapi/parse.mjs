// Parse an AsyncAPI document with the official parser (@asyncapi/parser) and print its
// diagnostics as one JSON object: {"errors": [...], "warnings": [...], "others": [...]}.
// Exit 0 when there is no error, 1 when there is, 2 when the parser itself failed.
// Usage: node parse.mjs FILE   (run from the directory where `npm ci` installed it)
import { Parser, fromFile } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "information", "hint"];

function describe(d) {
  return {
    severity: SEVERITY[d.severity] ?? String(d.severity),
    code: String(d.code),
    message: d.message,
    path: d.path.join("/"),
    line: d.range?.start?.line === undefined ? null : d.range.start.line + 1,
  };
}

const file = process.argv[2];
if (!file) {
  console.error("usage: node parse.mjs FILE");
  process.exit(2);
}
try {
  // fromFile sets the document's source, so relative $refs (./json/*.schema.json)
  // resolve against the file's own directory.
  const { document, diagnostics } = await fromFile(new Parser(), file).parse();
  const all = diagnostics.map(describe);
  const result = {
    parsed: document !== undefined,
    errors: all.filter((d) => d.severity === "error"),
    warnings: all.filter((d) => d.severity === "warning"),
    others: all.filter((d) => d.severity !== "error" && d.severity !== "warning"),
  };
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.errors.length === 0 && result.parsed ? 0 : 1);
} catch (err) {
  console.error(`parse.mjs: the parser failed: ${err?.stack ?? err}`);
  process.exit(2);
}
