// Oracle: Hugging Face's Rust `tokenizers` (native binding) encodes each JSON string read from
// a JSONL file, no special tokens added, and prints one JSON array of ids per line.
// Usage: node hf_encode.mjs TOKENIZER_JSON DOCS_JSONL > IDS_JSONL
import { Tokenizer } from "@anush008/tokenizers";
import { readFileSync } from "node:fs";

const [tokenizerPath, docsPath] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokenizerPath);
const lines = readFileSync(docsPath, "utf8").split("\n").filter((l) => l.length);
let out = "";
for (const l of lines) {
  const enc = await tok.encode(JSON.parse(l), null, { addSpecialTokens: false });
  out += JSON.stringify(Array.from(enc.getIds())) + "\n";
}
process.stdout.write(out);
