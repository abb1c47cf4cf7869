// Dynamic batching: requests wait in one bounded queue; a single worker thread (the only one
// that touches the model) takes the oldest request and every other queued request of the same
// task and map namespace, up to `max_batch` inputs, and runs them as one forward batch. A batch
// that is not full waits for more, at most `max_wait` after its oldest request arrived, only while
// some request is on its way (an Arrival: its body being read, parsed, tokenized): a lone request
// runs at once, and batches fill from what arrives while the model is busy (BatchWait::kAlways
// waits out the window regardless, as a fixed batching window does).
//
// The queue is bounded in inputs: a request that would take it past `max_queue` is refused at
// once (the server answers 503), so latency stays bounded under overload instead of growing
// without limit. stop() refuses new requests, finishes every queued one, and joins the worker.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "attncache/serve/tenant_namespaces.h"

namespace attncache::serve {

enum class Task { kEmbed, kScore };

// One request's inputs and, once `done` is ready, its results.
struct Job {
  Task task = Task::kEmbed;
  std::shared_ptr<const Namespace> ns;  // null: the exact path
  std::string tenant;                   // for metrics
  std::vector<std::vector<int32_t>> inputs;
  std::chrono::steady_clock::time_point enqueued;

  // Filled by the runner.
  std::vector<float> vectors;                  // kEmbed: inputs × dim
  std::vector<std::vector<double>> log_probs;  // kScore: per input, log p(id[i] | ids[..i])
  size_t hits = 0;                             // inputs that reused stored maps
  std::string error;                           // non-empty: the runner failed (internal)
  std::promise<void> done;
};

// Which batches that are not full wait for more requests (up to max_wait).
enum class BatchWait {
  kForArrivals,  // only while a request is on its way (Batcher::Arrival)
  kAlways,       // every one: a fixed window
};

struct BatcherOptions {
  size_t max_batch = 32;                     // inputs per forward batch
  std::chrono::microseconds max_wait{5000};  // how long the oldest request may wait
  size_t max_queue = 1024;                   // inputs queued, not yet running
  BatchWait wait = BatchWait::kForArrivals;
};

class Batcher {
 public:
  // Runs one group of jobs (same task, same namespace) as a batch and fills their results. May
  // throw: the batcher then sets every job's error to the message.
  using Runner = std::function<void(const std::vector<Job*>&)>;
  // Called with the queue depth (inputs) whenever it changes, in order (under the queue's lock:
  // it must not call back into the batcher).
  using DepthObserver = std::function<void(size_t)>;

  Batcher(BatcherOptions options, Runner runner, DepthObserver observer = {});
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // A request on its way to submit(), from when its handler starts until submit() (given it) or
  // its destruction, whichever comes first.
  class Arrival {
   public:
    ~Arrival();
    Arrival(const Arrival&) = delete;
    Arrival& operator=(const Arrival&) = delete;

   private:
    friend class Batcher;
    explicit Arrival(Batcher* batcher) : batcher_(batcher) {}
    Batcher* batcher_;  // null once it arrived
  };
  Arrival arrival();

  enum class Admission { kAccepted, kQueueFull, kStopped };
  // Queues a job (stamping `enqueued`); on kAccepted its `done` future becomes ready once it ran.
  // `arrival` (may be null): the job's Arrival, which ends here whatever the admission.
  Admission submit(const std::shared_ptr<Job>& job, Arrival* arrival = nullptr);
  // Refuses new jobs, runs every queued one, joins the worker. Idempotent.
  void stop();
  size_t depth() const;
  const BatcherOptions& options() const { return options_; }

 private:
  void work();
  bool same_group(const Job& a, const Job& b) const { return a.task == b.task && a.ns == b.ns; }
  size_t group_inputs() const;  // inputs queued in the oldest job's group; holds mu_
  std::vector<std::shared_ptr<Job>> take_group();  // holds mu_
  void end_arrival(Arrival& arrival);              // holds mu_

  BatcherOptions options_;
  Runner runner_;
  DepthObserver observer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  size_t depth_ = 0;
  size_t arriving_ = 0;  // Arrivals not yet ended
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace attncache::serve
