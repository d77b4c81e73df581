// What a node counts about itself for operators (chorusctl stats): rooms, connections, messages stored.
#pragma once

#include <atomic>
#include <cstdint>

namespace chorus::actors {

/// One per node, shared by the actors that update it and the membership actor that publishes it. Relaxed
/// atomics: each number is a gauge or a running total read now and then, never used to synchronise.
struct node_counters {
  std::atomic<std::uint64_t> rooms{0};            ///< room actors active on this node
  std::atomic<std::uint64_t> connections{0};      ///< WebSocket sessions open on this node
  std::atomic<std::uint64_t> messages_stored{0};  ///< messages committed by this node's rooms, since start
};

}  // namespace chorus::actors
