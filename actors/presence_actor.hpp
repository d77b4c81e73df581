// The presence actor: whether a connection is its user's first or last — across the cluster when Redis is
// configured, on this node otherwise — so that rooms hear "online" and "offline" once per user.
#pragma once

#include <caf/all.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/messages.hpp"
#include "config/config.hpp"
#include "storage/presence_store.hpp"

namespace chorus::actors {

struct presence_state {
  std::string node_id;
  std::unordered_map<std::string, std::size_t> connections;
  static inline const char* name = "presence";
};

/// Without Redis: counts each user's connections on this node, so "offline" means the node's last one
/// closed. `heartbeat` does nothing.
presence_actor::behavior_type presence(presence_actor::stateful_pointer<presence_state> self,
                                       std::string node_id);

struct shared_presence_state {
  std::shared_ptr<storage::presence_store> store;
  std::chrono::milliseconds refresh_interval{1000};
  std::vector<storage::presence_change> changes;           ///< waiting for the next round, in arrival order
  std::vector<caf::typed_response_promise<bool>> waiting;  ///< their answers, in the same order
  std::size_t flushes_queued = 0;  ///< heartbeats sent to itself to start a round, not received yet
  caf::actor_clock::time_point refresh_due{};  ///< when the timer's heartbeat fires next (the actor clock)
  static inline const char* name = "presence";
};

/// With Redis: answers from `store` (storage::presence_store), so a user connected to two nodes is online
/// once, and a node that dies takes its users offline when its entry expires. Spawn it `caf::detached`:
/// it blocks on Redis (for at most the store's timeouts). Everything that arrived while Redis answered the
/// previous round goes out as one pipelined round (store->apply()), so a burst of connections — a dead
/// node's clients reconnecting here — costs round trips in proportion to the bursts, not to the clients.
///
/// `heartbeat` is both its timer and its "start a round" note to itself: every heartbeat runs a round of what
/// is queued; the timer's (one always in flight) also refreshes the node's entry and re-arms itself every
/// `refresh_interval`. Heartbeats are not labelled, so the count of round notes in flight decides which is
/// which; if a note and the timer swap places, a refresh merely comes a little later. A heartbeat from anyone
/// else only runs a round. The first refresh runs at once, which also drops what an earlier run of the same
/// node id left behind.
///
/// While Redis is unreachable the store answers per node and logs it once. On exit it clears the node's
/// entry, so its users do not stay online until the entry expires.
presence_actor::behavior_type shared_presence(presence_actor::stateful_pointer<shared_presence_state> self,
                                              std::shared_ptr<storage::presence_store> store,
                                              std::chrono::milliseconds refresh_interval);

/// The node's presence actor as `cfg` asks: shared_presence (detached) with a redis_url — entry TTL 3 ×
/// node_ttl_ms, refreshed every node_heartbeat_ms — and presence without.
presence_actor spawn_presence(caf::actor_system& system, const config::node_config& cfg);

}  // namespace chorus::actors
