// Oracle: @huggingface/jinja (the engine of transformers.js) renders a chat template for each
// case and prints one JSON string per line.
// Usage: node render.mjs TOKENIZER_CONFIG_JSON CASES_JSON > RENDERED_JSONL
// CASES_JSON: [{"messages": [...], "add_generation_prompt": bool, ...other variables}, ...];
// a case with "template" uses that template source instead of the config's.
import { Template } from "@huggingface/jinja";
import { readFileSync } from "node:fs";

const [configPath, casesPath] = process.argv.slice(2);
const cfg = JSON.parse(readFileSync(configPath, "utf8"));
const tokenText = (t) => (t && typeof t === "object" ? t.content : t);
const defaultTemplate = Array.isArray(cfg.chat_template)
  ? cfg.chat_template.find((t) => t.name === "default").template
  : cfg.chat_template;
let out = "";
for (const c of JSON.parse(readFileSync(casesPath, "utf8"))) {
  const { template, ...vars } = c;
  let rendered;
  try {
    const t = new Template(template ?? defaultTemplate);
    rendered = t.render({ bos_token: tokenText(cfg.bos_token), eos_token: tokenText(cfg.eos_token), ...vars });
  } catch (e) {
    rendered = { error: String(e.message ?? e) };
  }
  out += JSON.stringify(rendered) + "\n";
}
process.stdout.write(out);
