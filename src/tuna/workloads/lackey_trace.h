// Any program as a workload: replays a memory trace written by
//
//   valgrind --tool=lackey --trace-mem=yes --log-file=TRACE program args…
//
// Lines "I addr,size" (instruction fetch) count as one compute unit; " L addr,size" (load),
// " S addr,size" (store) and " M addr,size" (modify: load then store) go to the memory system;
// valgrind's "==pid==" lines are skipped. The program's sparse 64-bit address space is packed:
// its pages are numbered in first-touch order, keeping offsets within a page. The trace is
// read twice (once to size the footprint, once to replay), streaming, so traces larger than
// memory work.
#pragma once

#include <string>

#include "tuna/workloads/workload.h"

namespace tuna {

class LackeyTrace : public Workload {
 public:
  // Scans the trace; throws core::Error (bad input) naming the line of a malformed or
  // truncated record, or for a trace with no memory accesses.
  explicit LackeyTrace(std::string path);
  std::string name() const override { return "trace"; }
  uint64_t footprint_bytes() const override { return pages_ * 4096; }
  void run(sim::MemorySystem& memory) override;
  // A replay has no result of its own to check; verify() confirms that every record replayed.
  std::string verify() const override;

 private:
  std::string path_;
  uint64_t pages_ = 0, accesses_ = 0, replayed_ = 0;
};

}  // namespace tuna
