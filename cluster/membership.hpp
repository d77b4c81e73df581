// The membership actor: keeps this node's entry in the Redis registry alive, rejoins after being declared
// down, and keeps the room directory's view of the live nodes current.
#pragma once

#include <chrono>
#include <memory>

#include "actors/messages.hpp"
#include "cluster/node_registry.hpp"

namespace chorus::cluster {

struct membership_state {
  std::shared_ptr<node_registry> registry;
  node_info me;
  actors::room_directory directory;  ///< told the live nodes after every heartbeat; may be null
  std::chrono::milliseconds interval{1000};
  bool registered = false;

  static inline const char* name = "membership";
};

/// Registers `me` in `registry`, then heartbeats every `interval`. When a heartbeat reports the entry lost
/// (the node was paused past its TTL, or another incarnation of the same id took over), it logs that the
/// node was declared down and registers again as a new incarnation. While Redis is unreachable it keeps
/// trying (the registry logs the state changes). After each heartbeat it lists the live nodes and sends them
/// to `directory` with this node's incarnation (`nodes`), so a dead node's entry expiring, a new node, or
/// this node's own new incarnation reach placement within one interval. On exit it removes its entry, so
/// other nodes see a clean leave at once instead of waiting for the TTL. Spawn it `caf::detached`: registry
/// calls block.
actors::membership_actor::behavior_type membership(
    actors::membership_actor::stateful_pointer<membership_state> self,
    std::shared_ptr<node_registry> registry, node_info me, std::chrono::milliseconds interval,
    actors::room_directory directory);

}  // namespace chorus::cluster
