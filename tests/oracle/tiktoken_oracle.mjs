// Oracle for tiktoken.model tokenizers: OpenAI's tiktoken (npm `tiktoken`, its Rust core built
// to WebAssembly, the same code as the Python package) with the special tokens Kimi's
// tokenization_kimi.py derives from tokenizer_config.json.
//
//   node tiktoken_oracle.mjs make-model ENCODING OUT_DIR
//       writes OUT_DIR/tiktoken.model ("BASE64 RANK" lines, load_tiktoken_bpe's format) from the
//       ranks the package ships for ENCODING (o200k_base, cl100k_base), and a Kimi-style
//       OUT_DIR/tokenizer_config.json (special tokens after the ranks, tokenizer_class
//       TikTokenTokenizer, no add_bos_token)
//   node tiktoken_oracle.mjs encode MODEL_DIR PATTERN DOCS_JSONL   one JSON array of ids per document
//   node tiktoken_oracle.mjs encode-pieces MODEL_DIR PATTERN PIECES_JSONL   the same for documents
//       already cut into pieces (a JSON list of strings per line, kimi_presplit.py), each encoded alone
//   node tiktoken_oracle.mjs decode MODEL_DIR PATTERN IDS_JSONL    {"text", "skip"} per id list
// PATTERN: kimi (Kimi-K2/Moonlight's pat_str, with its class intersections, as the model's
// tokenizer script writes it), o200k_base or cl100k_base.
import { Tiktoken } from "tiktoken/lite";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const [mode, a, b, c] = process.argv.slice(2);

// TikTokenTokenizer.pat_str of huggingface.co/moonshotai/Kimi-K2-Instruct tokenization_kimi.py.
const KIMI = [
  String.raw`[\p{Han}]+`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`\p{N}{1,3}`,
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
].join("|");

const encodingJson = (name) => require(`tiktoken/encoders/${name}.json`);
const pattern = (name) => (name === "kimi" ? KIMI : encodingJson(name).pat_str);

// Special tokens as Kimi-K2's tokenization_kimi.py makes them: ids num_base .. num_base + 255, named by
// added_tokens_decoder, else <|reserved_token_ID|>.
function load(dir, patternName) {
  const model = readFileSync(`${dir}/tiktoken.model`, "utf8");
  const numBase = model.split("\n").filter((l) => l.length).length;
  const cfg = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
  const named = cfg.added_tokens_decoder ?? {};
  const special = {};
  const specialIds = new Set();
  for (let id = numBase; id < numBase + 256; id++) {
    special[named[id]?.content ?? `<|reserved_token_${id}|>`] = id;
    if (named[id]?.special ?? true) specialIds.add(id);
  }
  return { enc: new Tiktoken(model, special, pattern(patternName)), specialIds };
}

const lines = (path) => readFileSync(path, "utf8").split("\n").filter((l) => l.length);
// Replaces each maximal ill-formed subsequence, as Python's "replace"; keeps a leading BOM as Python does.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

if (mode === "make-model") {
  const j = encodingJson(a);
  // The package's compact form: "! FIRST_RANK tok tok ..." (consecutive ranks).
  const parts = j.bpe_ranks.split(" ");
  let out = "";
  for (let i = 2; i < parts.length; i++) out += `${parts[i]} ${Number(parts[1]) + i - 2}\n`;
  mkdirSync(b, { recursive: true });
  writeFileSync(`${b}/tiktoken.model`, out);
  const n = parts.length - 2;
  const names = ["[BOS]", "[EOS]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>",
                 "<|end_header_id|>", "[EOT]", "<|im_system|>", "<|im_middle|>"];
  const decoder = {};
  names.forEach((s, i) => {
    decoder[n + i] = { content: s, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  });
  writeFileSync(`${b}/tokenizer_config.json`, JSON.stringify({
    added_tokens_decoder: decoder, bos_token: "[BOS]", eos_token: "[EOS]", pad_token: "<|im_end|>",
    tokenizer_class: "TikTokenTokenizer", model_max_length: 1000000000000000019884624838656,
  }, null, 2));
} else if (mode === "encode") {
  const { enc } = load(a, b);
  let out = "";
  for (const l of lines(c)) out += JSON.stringify(Array.from(enc.encode(JSON.parse(l), "all"))) + "\n";
  process.stdout.write(out);
} else if (mode === "encode-pieces") {
  // One JSON list of pieces per line (kimi_presplit.py): each piece encoded alone, ids joined.
  const { enc } = load(a, b);
  let out = "";
  for (const l of lines(c)) out += JSON.stringify(JSON.parse(l).flatMap((p) => Array.from(enc.encode(p, "all")))) + "\n";
  process.stdout.write(out);
} else if (mode === "decode") {
  const { enc, specialIds } = load(a, b);
  let out = "";
  for (const l of lines(c)) {
    const ids = JSON.parse(l);
    const text = utf8.decode(enc.decode(Uint32Array.from(ids)));
    const skip = utf8.decode(enc.decode(Uint32Array.from(ids.filter((id) => !specialIds.has(id)))));
    out += JSON.stringify({ text, skip }) + "\n";
  }
  process.stdout.write(out);
} else {
  console.error("usage: tiktoken_oracle.mjs make-model ENCODING OUT_DIR | encode|decode MODEL_DIR PATTERN FILE");
  process.exit(2);
}
