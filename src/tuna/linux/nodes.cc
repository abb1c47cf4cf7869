#include "tuna/linux/nodes.h"

#include <algorithm>
#include <filesystem>
#include <string_view>

#include "core/error.h"
#include "tuna/linux/proc_text.h"

namespace tuna::linux_tier {
namespace {

constexpr std::string_view kNodeDir = "sys/devices/system/node";

std::string node_file(const std::string& root, int node, std::string_view name) {
  return under_root(root, core::cat(kNodeDir, "/node", node, "/", name));
}

// Fills the MemTotal, MemFree and MemUsed of `info` from nodeN/meminfo; other keys (Active,
// HugePages_Total, ...) are checked for form and skipped.
void read_meminfo(const std::string& path, NodeInfo* info) {
  const std::vector<std::string> lines = read_proc_lines(path);
  bool seen_total = false, seen_free = false, seen_used = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::vector<std::string_view> f = split_fields(lines[i]);
    if (f.empty()) continue;
    uint64_t node = 0, value = 0;
    const bool well_formed = (f.size() == 4 || (f.size() == 5 && f[4] == "kB")) && f[0] == "Node" &&
                             parse_u64(f[1], &node) && f[2].size() > 1 && f[2].back() == ':' &&
                             parse_u64(f[3], &value);
    if (!well_formed) {
      core::throw_bad_input(path, ":", i + 1, ": expected 'Node N Key: value [kB]', got '",
                            lines[i], "'");
    }
    if (node != static_cast<uint64_t>(info->node)) {
      core::throw_bad_input(path, ":", i + 1, ": line is about node ", node, ", not node ",
                            info->node);
    }
    const std::string_view key = f[2].substr(0, f[2].size() - 1);
    const uint64_t bytes = f.size() == 5 ? value * 1024 : value;
    if (key == "MemTotal") {
      info->mem_total_bytes = bytes;
      seen_total = true;
    } else if (key == "MemFree") {
      info->mem_free_bytes = bytes;
      seen_free = true;
    } else if (key == "MemUsed") {
      info->mem_used_bytes = bytes;
      seen_used = true;
    }
  }
  if (!seen_total || !seen_free || !seen_used) {
    core::throw_bad_input(path, ": lacks one of MemTotal, MemFree, MemUsed");
  }
}

}  // namespace

std::vector<int> list_nodes(const std::string& root) {
  const std::string dir = under_root(root, kNodeDir);
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) core::throw_bad_input(dir, ": cannot list NUMA nodes: ", ec.message());
  std::vector<int> nodes;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    uint64_t node = 0;
    if (name.starts_with("node") && parse_u64(std::string_view(name).substr(4), &node)) {
      nodes.push_back(static_cast<int>(node));
    }
  }
  if (nodes.empty()) core::throw_bad_input(dir, ": no nodeN folders (kernel without NUMA?)");
  std::sort(nodes.begin(), nodes.end());
  return nodes;
}

NodeInfo read_node(const std::string& root, int node) {
  NodeInfo info;
  info.node = node;
  read_meminfo(node_file(root, node, "meminfo"), &info);
  info.vmstat = read_vmstat_file(node_file(root, node, "vmstat"));
  const std::vector<std::string> cpulist = read_proc_lines(node_file(root, node, "cpulist"));
  info.has_cpu = std::any_of(cpulist.begin(), cpulist.end(),
                             [](const std::string& line) { return !split_fields(line).empty(); });
  return info;
}

std::vector<NodeInfo> read_nodes(const std::string& root) {
  std::vector<NodeInfo> nodes;
  for (const int node : list_nodes(root)) nodes.push_back(read_node(root, node));
  return nodes;
}

}  // namespace tuna::linux_tier
