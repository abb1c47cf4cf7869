#include "attncache/serve/batcher.h"

#include <exception>

namespace attncache::serve {

Batcher::Batcher(BatcherOptions options, Runner runner, DepthObserver observer)
    : options_(options), runner_(std::move(runner)), observer_(std::move(observer)) {
  if (options_.max_batch == 0) options_.max_batch = 1;
  worker_ = std::thread([this] { work(); });
}

Batcher::~Batcher() { stop(); }

Batcher::Arrival Batcher::arrival() {
  std::lock_guard lock(mu_);
  ++arriving_;
  return Arrival(this);
}

Batcher::Arrival::~Arrival() {
  if (batcher_ == nullptr) return;
  Batcher* batcher = batcher_;
  {
    std::lock_guard lock(batcher->mu_);
    batcher->end_arrival(*this);
  }
  batcher->cv_.notify_one();  // a batch may have been waiting for this request alone
}

void Batcher::end_arrival(Arrival& arrival) {
  if (arrival.batcher_ == nullptr) return;
  arrival.batcher_ = nullptr;
  --arriving_;
}

Batcher::Admission Batcher::submit(const std::shared_ptr<Job>& job, Arrival* arrival) {
  Admission admission = Admission::kAccepted;
  {
    std::lock_guard lock(mu_);
    if (arrival != nullptr) end_arrival(*arrival);
    if (stopping_) {
      admission = Admission::kStopped;
    } else if (depth_ > 0 && depth_ + job->inputs.size() > options_.max_queue) {
      // An oversized request is still admitted into an empty queue: it could never run otherwise.
      admission = Admission::kQueueFull;
    } else {
      job->enqueued = std::chrono::steady_clock::now();
      queue_.push_back(job);
      depth_ += job->inputs.size();
      // Under the lock, so that the worker's report of a smaller depth cannot come first.
      if (observer_) observer_(depth_);
    }
  }
  // The worker may be waiting for this job, queued or not (a refused one ends its arrival too).
  cv_.notify_one();
  return admission;
}

void Batcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

size_t Batcher::depth() const {
  std::lock_guard lock(mu_);
  return depth_;
}

size_t Batcher::group_inputs() const {
  size_t n = 0;
  for (const auto& job : queue_) {
    if (same_group(*job, *queue_.front())) n += job->inputs.size();
  }
  return n;
}

std::vector<std::shared_ptr<Job>> Batcher::take_group() {
  std::vector<std::shared_ptr<Job>> group;
  size_t inputs = 0;
  const Job& head = *queue_.front();
  for (auto it = queue_.begin(); it != queue_.end();) {
    const size_t n = (*it)->inputs.size();
    // The oldest job always goes; later ones of its group while they fit.
    if (same_group(**it, head) && (group.empty() || inputs + n <= options_.max_batch)) {
      inputs += n;
      group.push_back(std::move(*it));
      it = queue_.erase(it);
      if (inputs >= options_.max_batch) break;
    } else {
      ++it;
    }
  }
  depth_ -= inputs;
  return group;
}

void Batcher::work() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> group;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and everything queued has run
      const auto deadline = queue_.front()->enqueued + options_.max_wait;
      while (!stopping_ && group_inputs() < options_.max_batch &&
             (options_.wait == BatchWait::kAlways || arriving_ > 0) &&
             std::chrono::steady_clock::now() < deadline) {
        cv_.wait_until(lock, deadline);
      }
      group = take_group();
      if (observer_) observer_(depth_);
    }
    std::vector<Job*> jobs;
    for (const auto& job : group) jobs.push_back(job.get());
    try {
      runner_(jobs);
    } catch (const std::exception& e) {
      for (Job* job : jobs) job->error = e.what();
    } catch (...) {
      for (Job* job : jobs) job->error = "unknown failure";
    }
    for (Job* job : jobs) job->done.set_value();
  }
}

}  // namespace attncache::serve
