#include "io/compressed_tensors_config.h"

#include <set>

#include "base/error.h"

namespace dsv3 {

namespace {

std::string dump(const nlohmann::json& v) { return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

bool absent(const nlohmann::json& o, const char* key) {
  const auto it = o.find(key);
  return it == o.end() || it->is_null();
}

// Unknown keys with a value are refused: a setting we do not know may change the math.
void only_known(const nlohmann::json& o, const std::set<std::string>& known, const std::string& where) {
  for (const auto& [key, v] : o.items())
    if (!known.count(key) && !v.is_null()) fail("{}.{} is {}; dsv3 does not know this compressed-tensors setting", where, key, dump(v));
}

std::vector<ModuleMatcher> matchers(const nlohmann::json& o, const char* key, const std::string& where) {
  std::vector<ModuleMatcher> out;
  if (absent(o, key)) return out;
  const auto& a = o[key];
  if (!a.is_array()) fail("{}.{} is {}; expected a list of names and \"re:\" patterns", where, key, dump(a));
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_string()) fail("{}.{}[{}] is {}; expected a string", where, key, i, dump(a[i]));
    out.emplace_back(a[i].get<std::string>(), fmt::format("{}.{}[{}]", where, key, i));
  }
  return out;
}

PackedScheme parse_weights(const nlohmann::json& w, const std::string& where) {
  if (!w.is_object()) fail("{} is {}; expected an object (dsv3 reads weight-only quantisation)", where, dump(w));
  only_known(w, {"num_bits", "type", "symmetric", "strategy", "group_size", "dynamic", "observer", "observer_kwargs",
                 "actorder", "block_structure", "scale_dtype", "zp_dtype"},
             where);
  PackedScheme s;
  const auto bits = w.find("num_bits");
  if (bits == w.end() || !bits->is_number_integer() || (*bits != 4 && *bits != 8))
    fail("{}.num_bits is {}; dsv3 reads 4- and 8-bit integer weights", where, bits == w.end() ? "missing" : dump(*bits));
  s.num_bits = bits->get<int>();
  if (!absent(w, "type") && w["type"] != "int")
    fail("{}.type is {}; dsv3 reads only \"int\" weights (float4/float8 schemes are other formats)", where, dump(w["type"]));
  if (!absent(w, "symmetric") && w["symmetric"] != true)
    fail("{}.symmetric is {}; dsv3 reads only symmetric weights (no weight_zero_point)", where, dump(w["symmetric"]));
  if (!absent(w, "dynamic") && w["dynamic"] != false)
    fail("{}.dynamic is {}; stored weights need static scales", where, dump(w["dynamic"]));
  if (!absent(w, "actorder") && w["actorder"] != false)
    fail("{}.actorder is {}; dsv3 reads weights in column order only (no weight_g_idx)", where, dump(w["actorder"]));
  if (!absent(w, "block_structure")) fail("{}.block_structure is {}; dsv3 reads group or channel scales", where, dump(w["block_structure"]));
  if (!absent(w, "scale_dtype")) fail("{}.scale_dtype is {}; dsv3 reads scales stored as they are (BF16)", where, dump(w["scale_dtype"]));
  const std::string strategy = absent(w, "strategy") ? "" : dump(w["strategy"]);
  if (strategy == "\"group\"") {
    const auto g = w.find("group_size");
    if (g == w.end() || !g->is_number_integer() || g->get<int64_t>() <= 0 || g->get<int64_t>() > (int64_t(1) << 30))
      fail("{}.group_size is {}; strategy \"group\" needs a positive integer", where, g == w.end() ? "missing" : dump(*g));
    s.group_size = g->get<int64_t>();
  } else if (strategy == "\"channel\"") {
    s.group_size = 0;
  } else {
    fail("{}.strategy is {}; dsv3 reads \"group\" and \"channel\" weight scales", where, strategy.empty() ? "missing" : strategy);
  }
  return s;
}

}  // namespace

ModuleMatcher::ModuleMatcher(const std::string& entry, const std::string& where) : entry_(entry) {
  if (entry.rfind("re:", 0) != 0) return;
  // std::regex recurses per character; a bound keeps a hostile config from exhausting the stack.
  if (entry.size() > 256) fail("{}: pattern of {} characters; at most 256", where, entry.size());
  try {
    re_ = std::make_shared<const std::regex>(entry.substr(3), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail("{}: {} is not a valid regular expression ({})", where, dump(entry), e.what());
  }
}

bool ModuleMatcher::matches(const std::string& module, bool is_linear) const {
  if (re_) return std::regex_search(module, *re_, std::regex_constants::match_continuous);
  return entry_ == module || (is_linear && entry_ == "Linear");
}

const PackedScheme* CompressedTensorsConfig::scheme_for(const std::string& module, bool is_linear) const {
  for (const auto& ig : ignore)
    if (ig.matches(module, is_linear)) return nullptr;
  for (const auto& g : groups)
    for (const auto& t : g.targets)
      if (t.matches(module, is_linear)) return &g.scheme;
  return nullptr;
}

CompressedTensorsConfig parse_compressed_tensors_config(const nlohmann::json& q, const std::string& where) {
  if (!q.is_object()) fail("{} must be an object, got {}", where, dump(q));
  only_known(q, {"quant_method", "format", "config_groups", "ignore", "kv_cache_scheme", "quantization_status",
                 "global_compression_ratio", "sparsity_config", "transform_config", "version", "provider"},
             where);
  if (absent(q, "quant_method") || q["quant_method"] != "compressed-tensors")
    fail("{}.quant_method is {}; expected \"compressed-tensors\"", where, absent(q, "quant_method") ? "missing" : dump(q["quant_method"]));
  if (absent(q, "format") || q["format"] != "pack-quantized")
    fail("{}.format is {}; dsv3 reads compressed-tensors only in \"pack-quantized\" format (int4/int8 weights packed "
         "in int32)",
         where, absent(q, "format") ? "missing" : dump(q["format"]));
  if (!absent(q, "quantization_status") && q["quantization_status"] != "compressed")
    fail("{}.quantization_status is {}; dsv3 reads \"compressed\" checkpoints", where, dump(q["quantization_status"]));
  if (!absent(q, "kv_cache_scheme")) fail("{}.kv_cache_scheme is {}; dsv3 does not read a quantised KV cache", where, dump(q["kv_cache_scheme"]));
  if (!absent(q, "sparsity_config") && !(q["sparsity_config"].is_object() && q["sparsity_config"].empty()))
    fail("{}.sparsity_config is {}; dsv3 reads dense weights", where, dump(q["sparsity_config"]));
  if (!absent(q, "transform_config")) fail("{}.transform_config is {}; dsv3 reads untransformed weights", where, dump(q["transform_config"]));
  CompressedTensorsConfig c;
  const auto groups = q.find("config_groups");
  if (groups == q.end() || !groups->is_object() || groups->empty())
    fail("{}.config_groups is {}; expected an object of one or more groups", where, groups == q.end() ? "missing" : dump(*groups));
  for (const auto& [name, g] : groups->items()) {
    const std::string gw = fmt::format("{}.config_groups.{}", where, name);
    if (!g.is_object()) fail("{} is {}; expected an object", gw, dump(g));
    only_known(g, {"targets", "weights", "input_activations", "output_activations", "format"}, gw);
    if (!absent(g, "input_activations"))
      fail("{}.input_activations is {}; dsv3 reads weight-only quantisation", gw, dump(g["input_activations"]));
    if (!absent(g, "output_activations"))
      fail("{}.output_activations is {}; dsv3 reads weight-only quantisation", gw, dump(g["output_activations"]));
    if (!absent(g, "format") && g["format"] != "pack-quantized")
      fail("{}.format is {}; dsv3 reads only \"pack-quantized\"", gw, dump(g["format"]));
    if (absent(g, "weights")) fail("{}.weights is missing", gw);
    CompressedTensorsConfig::Group group{.scheme = parse_weights(g["weights"], gw + ".weights"), .targets = matchers(g, "targets", gw)};
    group.scheme.group_name = name;
    if (group.targets.empty()) fail("{}.targets is empty or missing; expected e.g. [\"Linear\"]", gw);
    c.groups.push_back(std::move(group));
  }
  c.ignore = matchers(q, "ignore", where);
  return c;
}

std::optional<CompressedTensorsConfig> compressed_tensors_config_of(const nlohmann::json& config,
                                                                    const std::string& where) {
  const auto q = config.find("quantization_config");
  if (q == config.end() || !q->is_object()) return std::nullopt;
  const auto m = q->find("quant_method");
  if (m == q->end() || *m != "compressed-tensors") return std::nullopt;
  return parse_compressed_tensors_config(*q, where + ": quantization_config");
}

}  // namespace dsv3
