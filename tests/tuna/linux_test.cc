// The Linux readers and actuators on fake /proc and /sys trees (and on files captured from a real
// 6.18 kernel, tests/data/linux): parsing, errors naming the file and line, Linux's watermark
// arithmetic and the sysctls the watermark actuator writes. The perf and balloon tests use the
// real kernel where it permits (user-space counters, a 4 MiB pin on node 0) and skip otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"
#include "tuna/linux/balloon_actuator.h"
#include "tuna/linux/nodes.h"
#include "tuna/linux/perf_counters.h"
#include "tuna/linux/telemetry.h"
#include "tuna/linux/vmstat.h"
#include "tuna/linux/watermark_actuator.h"
#include "tuna/linux/zoneinfo.h"

namespace tuna::linux_tier {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMiB = uint64_t{1} << 20;

std::string fixture(const std::string& name) {
  return testing_paths::data_dir() + "/linux/" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A fake root: files are written relative to it, as the kernel would show them under "/".
class FakeTree {
 public:
  std::string root() const { return dir_.path(); }
  std::string path(const std::string& relative) const { return dir_.path(relative); }
  void write(const std::string& relative, const std::string& text) const {
    std::filesystem::create_directories(std::filesystem::path(path(relative)).parent_path());
    std::ofstream(path(relative)) << text;
  }
  std::string read(const std::string& relative) const { return slurp(path(relative)); }

 private:
  testing_support::TempDir dir_;
};

// The message of the core::Error that `body` throws, and that its kind is `kind`.
template <typename Body>
std::string error_of(Body body, core::ErrorKind kind = core::ErrorKind::kBadInput) {
  try {
    body();
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no core::Error thrown";
  return "";
}

// ---------------------------------------------------------------------------------------------
// /proc/vmstat

TEST(LinuxVmstat, ParsesTheCapturedFile) {
  const VmStat vmstat = read_vmstat_file(fixture("vmstat"));
  EXPECT_GT(vmstat.size(), 150u);
  EXPECT_TRUE(vmstat.contains("nr_free_pages"));
  EXPECT_GT(vmstat.at("pgfault"), 0u);
  TierCounters counters;
  EXPECT_TRUE(fill_migration_counters(vmstat, &counters).empty());  // 6.18 has them all
}

TEST(LinuxVmstat, ReadsUnderTheRootAndNamesMissingKeys) {
  FakeTree tree;
  // A 5.15-like kernel: NUMA balancing counters but no promotion or demotion counters.
  tree.write("proc/vmstat",
             "nr_free_pages 100\nnuma_hint_faults 7\nnuma_pages_migrated 5\n"
             "pgmigrate_success 11\npgdemote_kswapd 3\n");
  TierCounters counters;
  counters.pgpromote_success = 99;  // overwritten: a missing key counts 0
  const std::vector<std::string> missing =
      fill_migration_counters(read_vmstat(tree.root()), &counters);
  EXPECT_EQ(missing, (std::vector<std::string>{"pgpromote_success", "pgpromote_candidate",
                                               "pgdemote_direct"}));
  EXPECT_EQ(counters.pgpromote_success, 0u);
  EXPECT_EQ(counters.pgdemote_kswapd, 3u);
  EXPECT_EQ(counters.numa_hint_faults, 7u);
  EXPECT_EQ(counters.numa_pages_migrated, 5u);
  EXPECT_EQ(counters.pgmigrate_success, 11u);
}

TEST(LinuxVmstat, ErrorsNameTheFileAndLine) {
  FakeTree tree;
  EXPECT_NE(error_of([&] { read_vmstat(tree.root()); }).find(tree.path("proc/vmstat")),
            std::string::npos);
  tree.write("proc/vmstat", "nr_free_pages 100\n\npgfault twelve\n");
  const std::string message = error_of([&] { read_vmstat(tree.root()); });
  EXPECT_NE(message.find(tree.path("proc/vmstat") + ":3:"), std::string::npos) << message;
  EXPECT_NE(message.find("pgfault twelve"), std::string::npos) << message;
  tree.write("proc/vmstat", "nr_free_pages 100 7\n");
  EXPECT_NE(error_of([&] { read_vmstat(tree.root()); }).find(":1:"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// /sys/devices/system/node

// A tiered machine in miniature: node 0 with CPUs, node 1 (CXL) without.
void write_two_nodes(const FakeTree& tree) {
  const std::string dir = "sys/devices/system/node/";
  tree.write(dir + "online", "0-1\n");
  tree.write(dir + "possible", "0-1\n");
  tree.write(dir + "node0/cpulist", "0-3\n");
  tree.write(dir + "node0/meminfo",
             "Node 0 MemTotal:       16384 kB\nNode 0 MemFree:        12288 kB\n"
             "Node 0 MemUsed:         4096 kB\nNode 0 Active:           100 kB\n"
             "Node 0 HugePages_Total:     0\n");
  tree.write(dir + "node0/vmstat", "nr_free_pages 3072\npgpromote_success 9\n");
  tree.write(dir + "node1/cpulist", "\n");
  tree.write(dir + "node1/meminfo",
             "Node 1 MemTotal:       65536 kB\nNode 1 MemFree:        65000 kB\n"
             "Node 1 MemUsed:          536 kB\n");
  tree.write(dir + "node1/vmstat", "nr_free_pages 16250\npgdemote_kswapd 4\n");
}

TEST(LinuxNodes, FindsTheSlowTierAsTheNodeWithoutCpus) {
  FakeTree tree;
  write_two_nodes(tree);
  EXPECT_EQ(list_nodes(tree.root()), (std::vector<int>{0, 1}));
  const std::vector<NodeInfo> nodes = read_nodes(tree.root());
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].node, 0);
  EXPECT_TRUE(nodes[0].has_cpu);
  EXPECT_EQ(nodes[0].mem_total_bytes, 16 * kMiB);
  EXPECT_EQ(nodes[0].mem_free_bytes, 12 * kMiB);
  EXPECT_EQ(nodes[0].mem_used_bytes, 4 * kMiB);
  EXPECT_EQ(nodes[0].vmstat.at("pgpromote_success"), 9u);
  EXPECT_EQ(nodes[1].node, 1);
  EXPECT_FALSE(nodes[1].has_cpu);
  EXPECT_EQ(nodes[1].mem_total_bytes, 64 * kMiB);
  EXPECT_EQ(nodes[1].vmstat.at("pgdemote_kswapd"), 4u);
}

TEST(LinuxNodes, ParsesTheCapturedMeminfoAndVmstat) {
  FakeTree tree;
  tree.write("sys/devices/system/node/node0/meminfo", slurp(fixture("node0_meminfo")));
  tree.write("sys/devices/system/node/node0/vmstat", slurp(fixture("node0_vmstat")));
  tree.write("sys/devices/system/node/node0/cpulist", "0-1\n");
  const NodeInfo node = read_node(tree.root(), 0);
  EXPECT_EQ(node.mem_total_bytes, uint64_t{13592780} * 1024);
  EXPECT_EQ(node.mem_free_bytes, uint64_t{11303032} * 1024);
  EXPECT_EQ(node.mem_used_bytes, uint64_t{2289748} * 1024);
  EXPECT_TRUE(node.has_cpu);
  EXPECT_TRUE(node.vmstat.contains("nr_free_pages"));
}

TEST(LinuxNodes, ErrorsNameTheFileAndLine) {
  FakeTree tree;
  EXPECT_NE(error_of([&] { list_nodes(tree.root()); }).find(tree.path("sys/devices/system/node")),
            std::string::npos);
  write_two_nodes(tree);
  const std::string meminfo = "sys/devices/system/node/node1/meminfo";
  tree.write(meminfo, "Node 1 MemTotal:  65536 kB\nNode 0 MemFree:  1 kB\n");
  std::string message = error_of([&] { read_node(tree.root(), 1); });
  EXPECT_NE(message.find(tree.path(meminfo) + ":2:"), std::string::npos) << message;
  tree.write(meminfo, "Node 1 MemTotal  65536 kB\n");
  message = error_of([&] { read_node(tree.root(), 1); });
  EXPECT_NE(message.find(tree.path(meminfo) + ":1:"), std::string::npos) << message;
  tree.write(meminfo, "Node 1 MemTotal:  65536 kB\nNode 1 MemFree:  1 kB\n");
  message = error_of([&] { read_node(tree.root(), 1); });
  EXPECT_NE(message.find("MemUsed"), std::string::npos) << message;
  std::filesystem::remove(tree.path("sys/devices/system/node/node0/cpulist"));
  message = error_of([&] { read_node(tree.root(), 0); });
  EXPECT_NE(message.find(tree.path("sys/devices/system/node/node0/cpulist")), std::string::npos)
      << message;
}

// ---------------------------------------------------------------------------------------------
// /proc/zoneinfo and Linux's watermark formulas

TEST(LinuxZoneinfo, ParsesTheCapturedFile) {
  const std::vector<Zone> zones = read_zoneinfo_file(fixture("zoneinfo"));
  ASSERT_EQ(zones.size(), 5u);
  const char* names[] = {"DMA", "DMA32", "Normal", "Movable", "Device"};
  for (size_t i = 0; i < zones.size(); ++i) {
    EXPECT_EQ(zones[i].node, 0);
    EXPECT_EQ(zones[i].name, names[i]);
    ASSERT_TRUE(zones[i].promo.has_value());
  }
  const Zone& normal = zones[2];
  EXPECT_EQ(normal.free, 2049069u);
  EXPECT_EQ(normal.min, 13033u);
  EXPECT_EQ(normal.low, 16291u);
  EXPECT_EQ(normal.high, 19549u);
  EXPECT_EQ(*normal.promo, 22807u);
  EXPECT_EQ(normal.managed, 2621440u);
  EXPECT_EQ(zones[3].managed, 0u);
}

// The fixture was captured with vm.min_free_kbytes = 67584 and vm.watermark_scale_factor = 10:
// the formulas must give the kernel's own numbers for every zone, the empty Movable zone's
// floor of 32 included.
TEST(LinuxZoneinfo, FormulasReproduceTheCapturedKernelsWatermarks) {
  const std::vector<Zone> zones = read_zoneinfo_file(fixture("zoneinfo"));
  const std::vector<ZoneWatermarks> marks = linux_watermarks(zones, 67584, 10, 4096);
  ASSERT_EQ(marks.size(), zones.size());
  for (size_t i = 0; i < zones.size(); ++i) {
    SCOPED_TRACE(zones[i].name);
    EXPECT_EQ(marks[i].min, zones[i].min);
    EXPECT_EQ(marks[i].low, zones[i].low);
    EXPECT_EQ(marks[i].high, zones[i].high);
    EXPECT_EQ(marks[i].promo, *zones[i].promo);
  }
}

TEST(LinuxZoneinfo, ReadsOlderKernelsWithoutPromoAndSeveralNodes) {
  FakeTree tree;
  // 5.x layout: no boost, no promo.
  tree.write("proc/zoneinfo",
             "Node 0, zone   Normal\n  pages free     1000\n        min      10\n"
             "        low      12\n        high     14\n        spanned  2048\n"
             "        present  2048\n        managed  2000\n"
             "        protection: (0, 0, 0, 0)\n      nr_free_pages 1000\n"
             "Node 1, zone   Normal\n  pages free     500\n        min      5\n"
             "        low      6\n        high     7\n        managed  900\n");
  const std::vector<Zone> zones = read_zoneinfo(tree.root());
  ASSERT_EQ(zones.size(), 2u);
  EXPECT_FALSE(zones[0].promo.has_value());
  EXPECT_EQ(zones[0].managed, 2000u);
  EXPECT_EQ(zones[1].node, 1);
  EXPECT_EQ(zones[1].free, 500u);
  EXPECT_EQ(zones[1].high, 7u);
}

TEST(LinuxZoneinfo, ErrorsNameTheFileLineOrZone) {
  FakeTree tree;
  const std::string path = tree.path("proc/zoneinfo");
  EXPECT_NE(error_of([&] { read_zoneinfo(tree.root()); }).find(path), std::string::npos);
  tree.write("proc/zoneinfo", "Node 0 zone Normal\n");
  std::string message = error_of([&] { read_zoneinfo(tree.root()); });
  EXPECT_NE(message.find(path + ":1:"), std::string::npos) << message;
  tree.write("proc/zoneinfo", "Node 0, zone Normal\n  pages free 10\n        min  x1\n");
  message = error_of([&] { read_zoneinfo(tree.root()); });
  EXPECT_NE(message.find(path + ":3:"), std::string::npos) << message;
  tree.write("proc/zoneinfo",
             "Node 0, zone Normal\n  pages free 10\n min 1\n low 2\n high 3\n"
             "Node 0, zone Movable\n  pages free 0\n min 32\n low 32\n high 32\n managed 0\n");
  message = error_of([&] { read_zoneinfo(tree.root()); });
  EXPECT_NE(message.find("zone Normal has no 'managed'"), std::string::npos) << message;
  tree.write("proc/zoneinfo", "  pages free 10\n");
  message = error_of([&] { read_zoneinfo(tree.root()); });
  EXPECT_NE(message.find(path + ":1:"), std::string::npos) << message;
}

Zone zone(int node, const std::string& name, uint64_t managed) {
  Zone z;
  z.node = node;
  z.name = name;
  z.managed = managed;
  return z;
}

// One node holding one 4 GiB Normal zone: 1048576 pages; min_free_kbytes 16384 → pages_min 4096.
std::vector<Zone> four_gib_zone(int node = 0) { return {zone(node, "Normal", 1048576)}; }

TEST(LinuxWatermarks, FourGiBZoneByHand) {
  // Scale factor 10: gap = max(4096/4, 1048576·10/10000 = 1048) → high 4096 + 2·1048.
  const std::vector<ZoneWatermarks> marks = linux_watermarks(four_gib_zone(), 16384, 10, 4096);
  EXPECT_EQ(marks[0].min, 4096u);
  EXPECT_EQ(marks[0].low, 5144u);
  EXPECT_EQ(marks[0].high, 6192u);
  EXPECT_EQ(marks[0].promo, 7240u);
  EXPECT_EQ(usable_bytes(four_gib_zone(), marks, 0, 4096), (1048576u - 6192) * 4096);
  // A Movable zone takes managed/1024 in [32, 128] as its min; its share still sets the gap.
  std::vector<Zone> zones = four_gib_zone();
  zones.push_back(zone(1, "Movable", 1048576));
  const std::vector<ZoneWatermarks> with_movable = linux_watermarks(zones, 16384, 1, 4096);
  EXPECT_EQ(with_movable[0].min, 4096u);  // lowmem excludes Movable: node 0 keeps all of it
  EXPECT_EQ(with_movable[1].min, 128u);
  EXPECT_EQ(with_movable[1].low, 128u + 1024);  // gap: its 4096-page share / 4
}

TEST(LinuxWatermarks, PlansTheScaleFactorThenMinFreeKbytes) {
  // 3 GiB = 786432 pages needs high ≥ 262144: 4096 + 2·⌊1048576·wsf/10000⌋ ≥ 262144 first at
  // wsf 1231 (gap 129079, high 262254; wsf 1230 leaves 110 pages over).
  WatermarkPlan plan = plan_watermarks(four_gib_zone(), 0, 16384, 3 * kGiB, 4096);
  EXPECT_EQ(plan.watermark_scale_factor, 1231u);
  EXPECT_EQ(plan.min_free_kbytes, 16384u);
  EXPECT_EQ(plan.usable_bytes, (1048576u - 262254) * 4096);
  EXPECT_TRUE(plan.clamped.empty());
  // 1 GiB needs high ≥ 786432; wsf 3000 gives gap 314572, so min ≥ 786432 − 629144 = 157288
  // pages = 629152 kB.
  plan = plan_watermarks(four_gib_zone(), 0, 16384, 1 * kGiB, 4096);
  EXPECT_EQ(plan.watermark_scale_factor, 3000u);
  EXPECT_EQ(plan.min_free_kbytes, 629152u);
  EXPECT_EQ(plan.usable_bytes, 1 * kGiB);
  EXPECT_TRUE(plan.clamped.empty());
  // More than the node has: the loosest setting, and a note.
  plan = plan_watermarks(four_gib_zone(), 0, 16384, 8 * kGiB, 4096);
  EXPECT_EQ(plan.watermark_scale_factor, 1u);
  EXPECT_EQ(plan.min_free_kbytes, 16384u);
  EXPECT_EQ(plan.usable_bytes, (1048576u - 4096 - 2 * 1024) * 4096);
  EXPECT_NE(plan.clamped.find("at most 4072 MiB"), std::string::npos) << plan.clamped;
  // Nothing at all: min ≥ 1048576 − 629144 = 419432 pages, below the cap of half of lowmem.
  plan = plan_watermarks(four_gib_zone(), 0, 16384, 0, 4096);
  EXPECT_EQ(plan.min_free_kbytes, 419432u * 4);
  EXPECT_EQ(plan.usable_bytes, 0u);
  EXPECT_TRUE(plan.clamped.empty());
}

TEST(LinuxWatermarks, MinFreeKbytesIsSharedWithTheSlowNode) {
  // Two 4 GiB nodes: node 0 gets half of pages_min, so 1 GiB needs pages_min/2 ≥ 157288.
  std::vector<Zone> zones = four_gib_zone(0);
  zones.push_back(four_gib_zone(1)[0]);
  const WatermarkPlan plan = plan_watermarks(zones, 0, 16384, 1 * kGiB, 4096);
  EXPECT_EQ(plan.watermark_scale_factor, 3000u);
  EXPECT_EQ(plan.min_free_kbytes, 314576u * 4);
  EXPECT_EQ(plan.usable_bytes, 1 * kGiB);
  EXPECT_NE(error_of([&] { plan_watermarks(zones, 2, 16384, kGiB, 4096); }).find("node 2"),
            std::string::npos);
}

TEST(LinuxWatermarks, ClampsWhenTheFastNodeCannotReserveMore) {
  // Node 0 all Movable: its min stays at 128 pages whatever min_free_kbytes is, so scale factor
  // 3000 (high = 128 + 2·314572) is the most, and min_free_kbytes stays where it was.
  std::vector<Zone> zones = {zone(0, "Movable", 1048576), zone(1, "Normal", 1048576)};
  const WatermarkPlan plan = plan_watermarks(zones, 0, 16384, 1 * kGiB, 4096);
  EXPECT_EQ(plan.watermark_scale_factor, 3000u);
  EXPECT_EQ(plan.min_free_kbytes, 16384u);
  EXPECT_EQ(plan.usable_bytes, (1048576u - 128 - 2 * 314572) * 4096);
  EXPECT_NE(plan.clamped.find("node 0 keeps at least 1637 MiB"), std::string::npos) << plan.clamped;
  EXPECT_NE(plan.clamped.find("min_free_kbytes at most 2097152"), std::string::npos)
      << plan.clamped;
}

// A fake machine for the actuator: one 4 GiB zone on node 0 and the two sysctls.
void write_sysctls(const FakeTree& tree) {
  tree.write("proc/zoneinfo",
             "Node 0, zone   Normal\n  pages free     1000000\n        min      4096\n"
             "        low      5144\n        high     6192\n        promo    7240\n"
             "        managed  1048576\n");
  tree.write("proc/sys/vm/watermark_scale_factor", "10\n");
  tree.write("proc/sys/vm/min_free_kbytes", "16384\n");
}

TEST(LinuxWatermarkActuator, DryRunReportsAndChangesNothing) {
  if (::sysconf(_SC_PAGESIZE) != 4096) GTEST_SKIP() << "expectations assume 4 KiB pages";
  FakeTree tree;
  write_sysctls(tree);
  WatermarkActuator actuator(tree.root(), 0);
  EXPECT_EQ(actuator.name(), "watermark");
  EXPECT_EQ(actuator.apply(3 * kGiB, /*dry_run=*/true), "vm.watermark_scale_factor: 10 -> 1231\n");
  EXPECT_EQ(tree.read("proc/sys/vm/watermark_scale_factor"), "10\n");
  EXPECT_EQ(tree.read("proc/sys/vm/min_free_kbytes"), "16384\n");
}

TEST(LinuxWatermarkActuator, AppliesAndRestores) {
  if (::sysconf(_SC_PAGESIZE) != 4096) GTEST_SKIP() << "expectations assume 4 KiB pages";
  FakeTree tree;
  write_sysctls(tree);
  WatermarkActuator actuator(tree.root(), 0);
  EXPECT_EQ(actuator.apply(3 * kGiB, false), "vm.watermark_scale_factor: 10 -> 1231\n");
  EXPECT_EQ(tree.read("proc/sys/vm/watermark_scale_factor"), "1231\n");
  EXPECT_EQ(actuator.apply(3 * kGiB, false), "");  // already there
  const std::string lines = actuator.apply(1 * kGiB, false);
  EXPECT_EQ(lines.substr(0, lines.find("note:")),
            "vm.watermark_scale_factor: 1231 -> 3000\nvm.min_free_kbytes: 16384 -> 629152\n");
  EXPECT_NE(lines.find("shared by every node"), std::string::npos) << lines;
  EXPECT_EQ(tree.read("proc/sys/vm/min_free_kbytes"), "629152\n");
  // Back to 3 GiB: min_free_kbytes returns to the original, not the raised value.
  EXPECT_EQ(actuator.apply(3 * kGiB, false),
            "vm.watermark_scale_factor: 3000 -> 1231\nvm.min_free_kbytes: 629152 -> 16384\n");
  EXPECT_NE(actuator.apply(8 * kGiB, true).find("note: node 0 has at most"), std::string::npos);
  EXPECT_EQ(actuator.restore(), "vm.watermark_scale_factor: 1231 -> 10\n");
  EXPECT_EQ(tree.read("proc/sys/vm/watermark_scale_factor"), "10\n");
  EXPECT_EQ(tree.read("proc/sys/vm/min_free_kbytes"), "16384\n");
}

TEST(LinuxWatermarkActuator, ErrorsNameTheFile) {
  FakeTree tree;
  std::string message = error_of([&] { WatermarkActuator(tree.root(), 0); });
  EXPECT_NE(message.find(tree.path("proc/sys/vm/watermark_scale_factor")), std::string::npos)
      << message;
  write_sysctls(tree);
  tree.write("proc/sys/vm/min_free_kbytes", "lots\n");
  message = error_of([&] { WatermarkActuator(tree.root(), 0); });
  EXPECT_NE(message.find(tree.path("proc/sys/vm/min_free_kbytes") + ":1:"), std::string::npos)
      << message;
  write_sysctls(tree);
  WatermarkActuator actuator(tree.root(), 3);
  message = error_of([&] { actuator.apply(kGiB, true); });
  EXPECT_NE(message.find("node 3"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// Balloon

TEST(LinuxBalloon, SizesInWholeChunksFromTheNodesCapacity) {
  EXPECT_EQ(balloon_chunks(16 * kMiB, 12 * kMiB), 2u);
  EXPECT_EQ(balloon_chunks(16 * kMiB, 11 * kMiB), 3u);  // 5 MiB rounds up: never more than asked
  EXPECT_EQ(balloon_chunks(16 * kMiB, 16 * kMiB), 0u);
  EXPECT_EQ(balloon_chunks(16 * kMiB, 20 * kMiB), 0u);
  FakeTree tree;
  write_two_nodes(tree);  // node 0: 16 MiB
  BalloonActuator balloon(0, tree.root());
  EXPECT_EQ(balloon.name(), "balloon");
  EXPECT_EQ(balloon.apply(10 * kMiB, /*dry_run=*/true),
            "balloon on node 0: 0 MiB -> 6 MiB pinned\n");
  EXPECT_EQ(balloon.pinned_bytes(), 0u);
  EXPECT_EQ(balloon.apply(20 * kMiB, true), "");
  EXPECT_NE(error_of([&] { BalloonActuator(-1, tree.root()); }).find("node -1"), std::string::npos);
  BalloonActuator missing(5, tree.root());
  EXPECT_NE(error_of([&] { missing.apply(kMiB, true); }).find("node5/meminfo"), std::string::npos);
}

// VmLck of this process, in kB.
uint64_t locked_kb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmLck:")) return std::stoull(line.substr(6));
  }
  return 0;
}

TEST(LinuxBalloon, PinsOnNodeZero) {
  FakeTree tree;
  write_two_nodes(tree);  // node 0: 16 MiB, so asking 12 MiB pins 4 MiB (within ulimit -l 8 MiB)
  BalloonActuator balloon(0, tree.root());
  const uint64_t locked_before = locked_kb();
  try {
    balloon.apply(12 * kMiB, false);
  } catch (const core::Error& e) {
    GTEST_SKIP() << "the kernel refused: " << e.what();
  }
  EXPECT_EQ(balloon.pinned_bytes(), 4 * kMiB);
  EXPECT_EQ(balloon.pinned_bytes_on_node(), 4 * kMiB);
  EXPECT_EQ(locked_kb() - locked_before, 4096u);
  EXPECT_EQ(balloon.apply(14 * kMiB, false), "balloon on node 0: 4 MiB -> 2 MiB pinned\n");
  EXPECT_EQ(locked_kb() - locked_before, 2048u);
  balloon.apply(16 * kMiB, false);
  EXPECT_EQ(balloon.pinned_bytes(), 0u);
  EXPECT_EQ(locked_kb(), locked_before);
}

// ---------------------------------------------------------------------------------------------
// perf and telemetry

// Iterations of a loop the compiler cannot remove or vectorize: a few instructions each.
uint64_t spin(uint64_t iterations) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < iterations; ++i) {
    sum += i;
    asm volatile("" : "+r"(sum));
  }
  return sum;
}

// Counters on this thread, or null (with the reason) where perf is not permitted.
std::unique_ptr<PerfCounters> open_perf(const FakeTree& tree, std::string* why) {
  try {
    return std::make_unique<PerfCounters>(0, tree.root());
  } catch (const core::Error& e) {
    *why = e.what();
    return nullptr;
  }
}

TEST(LinuxPerf, CountsTheInstructionsOfALoop) {
  FakeTree tree;  // its perf_event_paranoid is absent: errors say "unreadable"
  std::string why;
  std::unique_ptr<PerfCounters> perf = open_perf(tree, &why);
  if (!perf) GTEST_SKIP() << "perf not permitted here: " << why;
  constexpr uint64_t kIterations = 10'000'000;
  perf->start();
  spin(kIterations);
  const PerfValues first = perf->read();
  spin(kIterations);
  perf->stop();
  const PerfValues second = perf->read();
  // At least 3 instructions per iteration (add, compare, branch), and not wildly more.
  EXPECT_GE(first.instructions, 3 * kIterations);
  EXPECT_LE(first.instructions, 12 * kIterations);
  EXPECT_GE(second.instructions, first.instructions + 3 * kIterations);
  EXPECT_GE(second.llc_misses, first.llc_misses);
  EXPECT_LT(second.llc_misses, second.instructions);
  spin(kIterations);
  EXPECT_EQ(perf->read().instructions, second.instructions);  // stopped
}

TEST(LinuxPerf, RefusalNamesErrnoAndParanoia) {
  FakeTree tree;
  tree.write("proc/sys/kernel/perf_event_paranoid", "2\n");
  // No such process: whatever the kernel objects to first, the message says why.
  const std::string message =
      error_of([&] { PerfCounters(0x7ffffff0, tree.root()); }, core::ErrorKind::kInternal);
  EXPECT_NE(message.find("errno"), std::string::npos) << message;
  EXPECT_NE(message.find(tree.path("proc/sys/kernel/perf_event_paranoid") + " is 2"),
            std::string::npos)
      << message;
}

TEST(LinuxTelemetry, DeltasBetweenSnapshots) {
  FakeTree tree;
  tree.write("proc/vmstat", "pgpromote_success 10\npgdemote_kswapd 5\nnuma_hint_faults 100\n");
  LinuxTelemetry telemetry(tree.root());
  const TelemetrySnapshot before = telemetry.snapshot();
  EXPECT_EQ(before.missing_keys.size(), 4u);
  tree.write("proc/vmstat", "pgpromote_success 25\npgdemote_kswapd 5\nnuma_hint_faults 160\n");
  const TelemetrySnapshot after = telemetry.snapshot();
  const TierCounters delta = counters_between(before, after);
  EXPECT_EQ(delta.pgpromote_success, 15u);
  EXPECT_EQ(delta.pgdemote_kswapd, 0u);
  EXPECT_EQ(delta.numa_hint_faults, 60u);
  EXPECT_EQ(delta.compute_units, 0u);  // no perf counters
  EXPECT_GE(delta.elapsed_ns, 0.0);
  // A counter that went backwards (a reset) gives 0, not a wrapped huge number.
  EXPECT_EQ(counters_between(after, before).pgpromote_success, 0u);
}

TEST(LinuxTelemetry, AddsPerfCountersWherePermitted) {
  FakeTree tree;
  tree.write("proc/vmstat", "pgpromote_success 1\n");
  std::string why;
  std::unique_ptr<PerfCounters> perf = open_perf(tree, &why);
  if (!perf) GTEST_SKIP() << "perf not permitted here: " << why;
  LinuxTelemetry telemetry(tree.root(), std::move(perf));
  const TelemetrySnapshot before = telemetry.snapshot();
  spin(1'000'000);
  const TelemetrySnapshot after = telemetry.snapshot();
  const TierCounters delta = counters_between(before, after);
  EXPECT_GE(delta.compute_units, 3'000'000u);
  EXPECT_GT(delta.elapsed_ns, 0.0);
}

}  // namespace
}  // namespace tuna::linux_tier
