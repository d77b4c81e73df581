// The membership actor: keeps this node's entry in the Redis registry alive, and rejoins after being declared
// down.
#pragma once

#include <chrono>
#include <memory>

#include "actors/messages.hpp"
#include "cluster/node_registry.hpp"

namespace chorus::cluster {

struct membership_state {
  std::shared_ptr<node_registry> registry;
  node_info me;
  std::chrono::milliseconds interval{1000};
  bool registered = false;

  static inline const char* name = "membership";
};

/// Registers `me` in `registry`, then heartbeats every `interval`. When a heartbeat reports the entry lost
/// (the node was paused past its TTL, or another incarnation of the same id took over), it logs that the
/// node was declared down and registers again as a new incarnation. While Redis is unreachable it keeps
/// trying (the registry logs the state changes). On exit it removes its entry, so other nodes see a clean
/// leave at once instead of waiting for the TTL. Spawn it `caf::detached`: registry calls block.
actors::membership_actor::behavior_type membership(
    actors::membership_actor::stateful_pointer<membership_state> self,
    std::shared_ptr<node_registry> registry, node_info me, std::chrono::milliseconds interval);

}  // namespace chorus::cluster
