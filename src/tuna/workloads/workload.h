// A workload: a real kernel whose data lives in instrumented arrays, so that every load and
// store also goes to the simulated memory system, and whose result its own verifier checks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/huge_page_allocator.h"

#include "tuna/tier/sim/simulator.h"

namespace tuna {

class Workload {
 public:
  virtual ~Workload() = default;
  virtual std::string name() const = 0;
  // Peak address space the workload allocates, in bytes.
  virtual uint64_t footprint_bytes() const = 0;
  // Runs the kernel against `memory`; may be called once per instance.
  virtual void run(sim::MemorySystem& memory) = 0;
  // Checks the kernel's result; returns an empty string when it is right, else what is wrong.
  virtual std::string verify() const = 0;
};

// An array whose element reads and writes are reported to the memory system (one access per
// element, at the element's address). The values themselves live in ordinary memory.
template <typename T>
class SimArray {
 public:
  SimArray(sim::MemorySystem& memory, size_t size)
      : memory_(&memory), base_(memory.allocate(size * sizeof(T))), data_(size) {}
  T get(size_t i, bool dependent = false) const {
    memory_->load(base_ + i * sizeof(T), dependent);
    return data_[i];
  }
  void set(size_t i, T value) {
    memory_->store(base_ + i * sizeof(T));
    data_[i] = value;
  }
  size_t size() const { return data_.size(); }
  // Unreported access, for setup that is not part of the measured kernel and for verifiers.
  core::HugePageVector<T>& raw() { return data_; }
  const core::HugePageVector<T>& raw() const { return data_; }
  // The values, for keeping after the run.
  std::vector<T> values() const { return {data_.begin(), data_.end()}; }

 private:
  sim::MemorySystem* memory_;
  uint64_t base_;
  core::HugePageVector<T> data_;
};

}  // namespace tuna
