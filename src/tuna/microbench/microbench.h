// Tuna's micro-benchmark template: a synthetic workload whose knobs span the three
// characteristics the paper models — page accesses (footprint, hot-set size and share, pattern,
// read/write mix, memory-level parallelism), arithmetic intensity (compute per access) and page
// migration (how often the hot set moves to fresh memory). Profiled over a grid of knob settings
// × fast-memory sizes, it fills the performance database.
//
// Access k goes to the hot set with probability `hot_fraction`, else anywhere in the table;
// within its region it is uniformly random or the next word of a sequential sweep. A write
// XORs a value into the word; a read adds the word to a checksum. A dependent access takes its
// address from the word the previous access read (pointer chasing: no overlap with it). The hot
// set starts at word 0 and jumps to the next hot-set-sized region `hot_moves` times, evenly
// spaced. With phases, the hot set's size changes at each phase boundary. The verifier replays
// the stream on a plain copy.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tuna/workloads/workload.h"

namespace tuna {

struct MicrobenchOptions {
  uint64_t footprint_bytes = 64ull << 20;
  uint64_t hot_bytes = 8ull << 20;
  double hot_fraction = 0.9;
  bool sequential = false;          // false: uniformly random within the region
  double write_fraction = 0.2;      // share of accesses that are read-modify-writes
  double dependent_fraction = 0.0;  // share of accesses whose address comes from the last read
  uint64_t compute_per_access = 4;  // compute units between accesses (arithmetic intensity)
  uint64_t hot_moves = 0;           // times the hot set moves to fresh memory (drift)
  // Phases: when given, the run is cut into this many equal phases, phase i with a hot set of
  // phase_hot_bytes[i] (hot_bytes is then unused): a workload whose need for fast memory changes.
  std::vector<uint64_t> phase_hot_bytes;
  uint64_t accesses = 5'000'000;
  uint64_t seed = 1;
};

// Throws core::Error (bad input) naming the knob that is out of range.
void validate(const MicrobenchOptions& o);
// The knobs as JSON (for database records and reports) and back.
nlohmann::json to_json(const MicrobenchOptions& o);
MicrobenchOptions microbench_from_json(const nlohmann::json& j);

class Microbench : public Workload {
 public:
  explicit Microbench(const MicrobenchOptions& options);
  std::string name() const override { return "microbench"; }
  uint64_t footprint_bytes() const override { return options_.footprint_bytes; }
  void run(sim::MemorySystem& memory) override;
  std::string verify() const override { return check(result_, checksum_); }
  // The verifier on any final table and checksum (tests feed it wrong ones).
  std::string check(const std::vector<uint64_t>& table, uint64_t checksum) const;

 private:
  // Plays the access stream on `table` (a SimArray, or a plain vector for the replay); `memory`
  // receives the compute (null in the replay). Returns the checksum of the reads.
  template <typename Table>
  uint64_t play(Table& table, sim::MemorySystem* memory) const;

  MicrobenchOptions options_;
  std::vector<uint64_t> result_;
  uint64_t checksum_ = 0;
};

}  // namespace tuna
