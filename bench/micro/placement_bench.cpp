// Micro-benchmark of rendezvous placement: what one owner lookup costs as the cluster grows
// (docs/scaling.md).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "cluster/placement.hpp"

namespace chorus::cluster {
namespace {

/// One owner_of() over `state.range(0)` nodes; the rooms vary so that no lookup repeats the previous one.
void BM_OwnerOf(benchmark::State& state) {
  std::vector<node_id> nodes;
  for (int i = 0; i < state.range(0); ++i) nodes.push_back("node-" + std::to_string(i));
  std::vector<std::string> rooms;
  for (int i = 0; i < 4096; ++i) rooms.push_back("room-" + std::to_string(i * 7919));
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(owner_of(rooms[i++ % rooms.size()], nodes));
  }
  state.counters["per_node"] =
      benchmark::Counter(static_cast<double>(state.range(0)),
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_OwnerOf)->Arg(10)->Arg(100)->Arg(1000);

}  // namespace
}  // namespace chorus::cluster
