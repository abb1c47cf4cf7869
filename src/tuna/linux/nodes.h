// NUMA nodes as sysfs shows them (/sys/devices/system/node/nodeN): capacity and use from meminfo,
// per-node vmstat, and whether the node has CPUs. On a tiered machine the slow tier (CXL memory)
// is a node without CPUs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tuna/linux/vmstat.h"

namespace tuna::linux_tier {

struct NodeInfo {
  int node = 0;
  uint64_t mem_total_bytes = 0;
  uint64_t mem_free_bytes = 0;
  uint64_t mem_used_bytes = 0;
  bool has_cpu = false;  // nodeN/cpulist is not empty
  VmStat vmstat;         // nodeN/vmstat
};

// The nodes listed under <root>/sys/devices/system/node, ascending. Throws core::Error (bad
// input) naming the path when the folder is missing or holds no node.
std::vector<int> list_nodes(const std::string& root = "/");

// Node `node`'s meminfo ("Node 0 MemTotal:  16384 kB" lines), vmstat and cpulist. Throws
// core::Error (bad input) naming the path of a missing file, or the path and line of a line that
// does not parse, belongs to another node, or lacks MemTotal, MemFree or MemUsed.
NodeInfo read_node(const std::string& root, int node);

std::vector<NodeInfo> read_nodes(const std::string& root = "/");

}  // namespace tuna::linux_tier
