#include "attncache/serve/model_runner.h"

#include <algorithm>
#include <chrono>

#include "attncache/decoder.h"
#include "core/error.h"

namespace attncache::serve {

void ModelRunner::for_each_slice(const std::vector<const std::vector<int32_t>*>& inputs,
                                 const SliceForward& forward) {
  for (size_t begin = 0; begin < inputs.size();) {
    std::vector<std::vector<int32_t>> batch;
    size_t tokens = 0;
    for (size_t i = begin; i < inputs.size() && batch.size() < max_batch_; ++i) {
      const size_t n = inputs[i]->size();
      if (!batch.empty() && tokens + n > max_batch_tokens_) break;
      batch.push_back(*inputs[i]);
      tokens += n;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const char* where = forward(batch, begin);
    metrics_.add_batch(batch.size(),
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                       where);
    begin += batch.size();
  }
}

void ModelRunner::run(const std::vector<Job*>& jobs) {
  if (jobs.empty()) return;
  if (jobs.front()->task == Task::kEmbed) {
    embed(jobs);
  } else {
    score(jobs);
  }
}

void ModelRunner::embed(const std::vector<Job*>& jobs) {
  // The group's inputs in job order, in slices (a job larger than a slice, a request alone, is
  // split).
  std::vector<const std::vector<int32_t>*> all;
  for (Job* job : jobs) {
    for (const auto& ids : job->inputs) all.push_back(&ids);
  }
  const std::shared_ptr<const Namespace>& ns = jobs.front()->ns;
  const size_t d = static_cast<size_t>(model_.dim());
  std::vector<float> out(all.size() * d);
  std::vector<char> hit(all.size(), 0);
  for_each_slice(all, [&](const std::vector<std::vector<int32_t>>& batch, size_t begin) {
    std::vector<float> e;
    const char* where = "cpu";
    if (ns != nullptr) {
      memo::AttnCache cache(model_, *ns->db, reuse_.threshold, memo::ReusePolicy{},
                            reuse_.verification);
      std::vector<memo::Lookup> lookups;
      e = cache.embed(batch, &lookups);
      size_t hits = 0;
      for (size_t i = 0; i < lookups.size(); ++i) {
        hit[begin + i] = lookups[i].hit;
        hits += lookups[i].hit;
      }
      metrics_.add_lookups(ns->name, batch.size(), hits);
    } else if (device_ != nullptr) {
      e = device_->embed(batch);
      if (device_->last_on_gpu()) where = "gpu";  // else the CPU ran it (a failure, a refusal)
    } else {
      e = model_.embed(batch);
    }
    if (e.size() != batch.size() * d) core::throw_internal("embed returned ", e.size(), " values");
    std::copy(e.begin(), e.end(), out.begin() + begin * d);
    return where;
  });
  size_t k = 0;
  for (Job* job : jobs) {
    job->vectors.assign(out.begin() + k * d, out.begin() + (k + job->inputs.size()) * d);
    job->hits = 0;
    for (size_t i = 0; i < job->inputs.size(); ++i) job->hits += hit[k + i];
    k += job->inputs.size();
  }
}

void ModelRunner::score(const std::vector<Job*>& jobs) {
  auto* decoder = dynamic_cast<Decoder*>(&model_);
  if (decoder == nullptr) core::throw_internal("scoring needs a decoder model");
  std::vector<const std::vector<int32_t>*> all;
  for (Job* job : jobs) {
    job->log_probs.clear();
    for (const auto& ids : job->inputs) all.push_back(&ids);
  }
  std::vector<std::vector<double>> out;
  out.reserve(all.size());
  // A slice is one forward pass, on the GPU or the CPU.
  for_each_slice(all, [&](const std::vector<std::vector<int32_t>>& batch, size_t) {
    const char* where = "cpu";
    std::vector<std::vector<double>> lps;
    if (device_ != nullptr) {
      lps = device_->token_log_probs(batch);
      if (device_->last_on_gpu()) where = "gpu";
    } else {
      lps = decoder->token_log_probs(batch);
    }
    for (auto& lp : lps) out.push_back(std::move(lp));
    return where;
  });
  size_t k = 0;
  for (Job* job : jobs) {
    for (size_t i = 0; i < job->inputs.size(); ++i) job->log_probs.push_back(std::move(out[k++]));
  }
}

}  // namespace attncache::serve
