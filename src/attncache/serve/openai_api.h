// The OpenAI wire format: request bodies parsed and checked, response and error bodies written.
//
//   POST /v1/embeddings   {"model", "input": string | [string], "encoding_format": "float" |
//                          "base64", "dimensions"?, "user"?} → {"object": "list", "data":
//                          [{"object": "embedding", "index", "embedding"}], "model", "usage"}
//   POST /v1/completions  scoring only (no generation): {"model", "prompt": string | [string],
//                          "echo": true, "max_tokens": 0, "logprobs": null | 0} → choices whose
//                          logprobs hold every prompt token and its log-probability given the
//                          tokens before it (null for the first), the form OpenAI-compatible
//                          servers answer for prompt log-likelihoods
//   errors                {"error": {"message", "type", "param", "code"}}
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attncache::serve {

// A request that gets an error response: HTTP status and the OpenAI error object.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, const std::string& message, std::string param = "",
           std::string code = "")
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type, param, code;
};

// Common errors.
ApiError bad_request(const std::string& message, const std::string& param = "");
std::string error_body(const ApiError& e);

struct EmbeddingsRequest {
  std::string model;
  std::vector<std::string> inputs;
  bool base64 = false;
  int dimensions = 0;  // 0: not given
};

struct CompletionsRequest {
  std::string model;
  std::vector<std::string> prompts;
};

// Parse and check a body; throw ApiError (400 for malformed or wrong types, 413 for more than
// `max_inputs` inputs). The model name is returned, not checked.
EmbeddingsRequest parse_embeddings_request(std::string_view body, size_t max_inputs);
CompletionsRequest parse_completions_request(std::string_view body, size_t max_inputs);

// {"object": "list", "data": [...], "model", "usage"}: `vectors` is [n × dim] row-major; floats
// are written in their shortest round-trip form (as `attncache embed` writes them), or as
// base64 of their little-endian bytes.
std::string embeddings_response(const std::string& model, const std::vector<float>& vectors,
                                size_t n, int dim, bool base64, size_t prompt_tokens);

// One completion choice per prompt: `tokens` (decoded text of each prompt token) and
// `log_probs` (log p(token i | tokens before it) for i ≥ 1).
struct ScoredPrompt {
  std::string prompt;
  std::vector<std::string> tokens;
  std::vector<double> log_probs;
};
std::string completions_response(const std::string& id, long created, const std::string& model,
                                 const std::vector<ScoredPrompt>& prompts, size_t prompt_tokens);

std::string base64_encode(const void* data, size_t bytes);

}  // namespace attncache::serve
