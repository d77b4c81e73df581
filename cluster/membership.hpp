// The membership actor: keeps this node's entry in the Redis registry alive, rejoins after being declared
// down, and keeps the room directory's view of the live nodes current.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "actors/messages.hpp"
#include "actors/node_counters.hpp"
#include "cluster/node_registry.hpp"

namespace chorus::cluster {

/// What chorusd does when the cluster asks something of the whole node; either may be empty.
struct membership_hooks {
  std::function<void()> drain;     ///< an operator asked this node to drain (called once)
  std::function<void()> rejoined;  ///< the node was declared down and registered again as a new incarnation
};

struct membership_state {
  std::shared_ptr<node_registry> registry;
  node_info me;
  actors::room_directory directory;  ///< told the live nodes after every heartbeat; may be null
  std::chrono::milliseconds interval{1000};
  std::shared_ptr<const actors::node_counters> counters;  ///< published with every heartbeat; may be null
  membership_hooks hooks;
  bool registered = false;
  bool draining = false;

  static inline const char* name = "membership";
};

/// Registers `me` in `registry`, then heartbeats every `interval`. When a heartbeat reports the entry lost
/// (the node was paused past its TTL, or another incarnation of the same id took over), it logs that the
/// node was declared down and registers again as a new incarnation. While Redis is unreachable it keeps
/// trying (the registry logs the state changes). After each heartbeat it lists the live nodes and sends them
/// to `directory` with this node's incarnation (`nodes`), so a dead node's entry expiring, a new node, or
/// this node's own new incarnation reach placement within one interval. Each heartbeat also publishes
/// `counters` (chorusctl stats) and looks for an operator's drain request for this incarnation (chorusctl
/// drain): the first time there is one it calls `hooks.drain` (chorusd then shuts down gracefully: hand the
/// rooms over, send the clients elsewhere, exit). After rejoining as a new incarnation it calls
/// `hooks.rejoined` (chorusd closes every connection with 1012: their rooms moved while this node was out,
/// and their clients resume from what they have). On exit it removes its entry, so other nodes see a clean
/// leave at once instead of waiting for the TTL. Spawn it `caf::detached`: registry calls block.
actors::membership_actor::behavior_type membership(
    actors::membership_actor::stateful_pointer<membership_state> self,
    std::shared_ptr<node_registry> registry, node_info me, std::chrono::milliseconds interval,
    actors::room_directory directory, std::shared_ptr<const actors::node_counters> counters = nullptr,
    membership_hooks hooks = {});

/// The live nodes other than `me.id` whose wire_version is not `me.wire_version`: the nodes `me` could not
/// peer with (see actors::cluster_wire_version). nullopt when Redis is unavailable. For start-up: a node that
/// finds any should not join, because its rooms and theirs would split the cluster in two.
std::optional<std::vector<node_info>> incompatible_nodes(node_registry& registry, const node_info& me);

}  // namespace chorus::cluster
