#include "attncache/serve/openai_api.h"

#include <bit>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace attncache::serve {
namespace {

using nlohmann::json;

json parse_object(std::string_view body) {
  if (body.empty()) throw bad_request("the request body is empty; send a JSON object");
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    // nlohmann's message names the byte offset, including for ill-formed UTF-8.
    throw bad_request(std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw bad_request("the request body must be a JSON object");
  return j;
}

std::string required_model(const json& j) {
  auto it = j.find("model");
  if (it == j.end() || it->is_null()) throw bad_request("'model' is required", "model");
  if (!it->is_string()) throw bad_request("'model' must be a string", "model");
  return it->get<std::string>();
}

// A string or an array of strings, none empty.
std::vector<std::string> texts(const json& j, const char* field, size_t max_inputs) {
  auto it = j.find(field);
  const std::string name = field;
  if (it == j.end() || it->is_null()) throw bad_request("'" + name + "' is required", name);
  std::vector<std::string> out;
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    if (it->empty()) throw bad_request("'" + name + "' must not be an empty array", name);
    if (it->size() > max_inputs) {
      throw ApiError(413, "invalid_request_error",
                     "'" + name + "' has " + std::to_string(it->size()) + " items; at most " +
                         std::to_string(max_inputs) + " per request",
                     name, "too_many_inputs");
    }
    const json& first = it->front();
    if (first.is_number_integer() ||
        (first.is_array() && !first.empty() && first.front().is_number_integer())) {
      throw bad_request("'" + name + "' holds token ids; this server takes text only", name);
    }
    for (size_t i = 0; i < it->size(); ++i) {
      const json& v = (*it)[i];
      if (!v.is_string()) {
        throw bad_request("'" + name + "[" + std::to_string(i) + "]' must be a string", name);
      }
      out.push_back(v.get<std::string>());
    }
  } else {
    throw bad_request("'" + name + "' must be a string or an array of strings", name);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].empty()) {
      // (core::cat: GCC 12 warns falsely of overlapping copies for "'" + std::string&&.)
      throw bad_request(it->is_array() ? core::cat("'", name, "[", i, "]' is empty")
                                       : core::cat("'", name, "' is empty"),
                        name);
    }
  }
  return out;
}

void append_float(std::string* out, float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

}  // namespace

ApiError bad_request(const std::string& message, const std::string& param) {
  return ApiError(400, "invalid_request_error", message, param);
}

std::string error_body(const ApiError& e) {
  json err = {{"message", e.what()},
              {"type", e.type},
              {"param", e.param.empty() ? json() : json(e.param)},
              {"code", e.code.empty() ? json() : json(e.code)}};
  return json{{"error", err}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

EmbeddingsRequest parse_embeddings_request(std::string_view body, size_t max_inputs) {
  const json j = parse_object(body);
  EmbeddingsRequest r;
  r.model = required_model(j);
  r.inputs = texts(j, "input", max_inputs);
  if (auto it = j.find("encoding_format"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || (*it != "float" && *it != "base64")) {
      throw bad_request("'encoding_format' must be \"float\" or \"base64\"", "encoding_format");
    }
    r.base64 = *it == "base64";
  }
  if (auto it = j.find("dimensions"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<long>() <= 0) {
      throw bad_request("'dimensions' must be a positive integer", "dimensions");
    }
    r.dimensions = static_cast<int>(std::min<long>(it->get<long>(), 1 << 30));
  }
  if (auto it = j.find("user"); it != j.end() && !it->is_null() && !it->is_string()) {
    throw bad_request("'user' must be a string", "user");
  }
  return r;
}

CompletionsRequest parse_completions_request(std::string_view body, size_t max_inputs) {
  const json j = parse_object(body);
  CompletionsRequest r;
  r.model = required_model(j);
  r.prompts = texts(j, "prompt", max_inputs);
  auto echo = j.find("echo");
  auto max_tokens = j.find("max_tokens");
  if (echo == j.end() || !echo->is_boolean() || !echo->get<bool>() || max_tokens == j.end() ||
      !max_tokens->is_number_integer() || max_tokens->get<long>() != 0) {
    throw bad_request(
        "this server scores prompts and does not generate: send \"echo\": true and "
        "\"max_tokens\": 0",
        echo == j.end() || !echo->is_boolean() || !echo->get<bool>() ? "echo" : "max_tokens");
  }
  if (auto it = j.find("logprobs"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<long>() != 0) {
      throw bad_request(
          "'logprobs' must be null or 0: each token's own log-probability is returned, "
          "alternatives (top_logprobs) are not",
          "logprobs");
    }
  }
  if (auto it = j.find("n"); it != j.end() && !it->is_null() && *it != 1) {
    throw bad_request("'n' must be 1", "n");
  }
  if (auto it = j.find("stream"); it != j.end() && it->is_boolean() && it->get<bool>()) {
    throw bad_request("streaming is not supported", "stream");
  }
  return r;
}

std::string base64_encode(const void* data, size_t bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((bytes + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes; i += 3) {
    const uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes) {
    uint32_t v = uint32_t(p[i]) << 16;
    if (i + 1 < bytes) v |= uint32_t(p[i + 1]) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string embeddings_response(const std::string& model, const std::vector<float>& vectors,
                                size_t n, int dim, bool base64, size_t prompt_tokens) {
  static_assert(std::endian::native == std::endian::little, "base64 embeddings are little-endian");
  std::string out = "{\"object\":\"list\",\"data\":[";
  out.reserve(n * dim * (base64 ? 6 : 14) + 256);
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    out += "{\"object\":\"embedding\",\"index\":" + std::to_string(i) + ",\"embedding\":";
    const float* v = vectors.data() + i * dim;
    if (base64) {
      out += '"' + base64_encode(v, sizeof(float) * dim) + '"';
    } else {
      out += '[';
      for (int k = 0; k < dim; ++k) {
        if (k) out += ',';
        append_float(&out, v[k]);
      }
      out += ']';
    }
    out += '}';
  }
  out += "],\"model\":" + json(model).dump(-1, ' ', false, json::error_handler_t::replace) +
         ",\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens) +
         ",\"total_tokens\":" + std::to_string(prompt_tokens) + "}}";
  return out;
}

std::string completions_response(const std::string& id, long created, const std::string& model,
                                 const std::vector<ScoredPrompt>& prompts, size_t prompt_tokens) {
  json choices = json::array();
  for (size_t i = 0; i < prompts.size(); ++i) {
    const ScoredPrompt& p = prompts[i];
    json lp = json::array();
    json offsets = json::array();
    size_t offset = 0;
    for (size_t t = 0; t < p.tokens.size(); ++t) {
      lp.push_back(t == 0 ? json() : json(p.log_probs.at(t - 1)));
      offsets.push_back(offset);
      offset += p.tokens[t].size();
    }
    choices.push_back({{"index", i},
                       {"text", p.prompt},
                       {"finish_reason", "length"},
                       {"logprobs",
                        {{"tokens", p.tokens},
                         {"token_logprobs", lp},
                         {"top_logprobs", nullptr},
                         {"text_offset", offsets}}}});
  }
  json r = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", choices},
            {"usage",
             {{"prompt_tokens", prompt_tokens},
              {"completion_tokens", 0},
              {"total_tokens", prompt_tokens}}}};
  // Token pieces that cut a multi-byte character are not valid UTF-8 alone: written as U+FFFD.
  return r.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace attncache::serve
