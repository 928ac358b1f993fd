// Oracle: Hugging Face's Rust `tokenizers` decodes each JSON array of ids read from a JSONL
// file and prints {"text": ..., "skip": ...} per line (without / with skip_special_tokens).
// Usage: node hf_decode.mjs TOKENIZER_JSON IDS_JSONL > TEXT_JSONL
import { Tokenizer } from "@anush008/tokenizers";
import { readFileSync } from "node:fs";

const [tokenizerPath, idsPath] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokenizerPath);
const lines = readFileSync(idsPath, "utf8").split("\n").filter((l) => l.length);
let out = "";
for (const l of lines) {
  const ids = JSON.parse(l);
  const text = await tok.decode(ids, false);
  const skip = await tok.decode(ids, true);
  out += `{"text":${JSON.stringify(text)},"skip":${JSON.stringify(skip)}}\n`;
}
process.stdout.write(out);
