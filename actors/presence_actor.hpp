// The presence actor: how many connections each user has on this node, so "offline" means the last one
// closed.
#pragma once

#include <string>
#include <unordered_map>

#include "actors/messages.hpp"

namespace chorus::actors {

struct presence_state {
  std::string node_id;
  std::unordered_map<std::string, std::size_t> connections;
  static inline const char* name = "presence";
};

/// One per node. (The cluster version keeps these counts in Redis, so that a user connected to two
/// nodes is online once; the interface stays the same.)
presence_actor::behavior_type presence(presence_actor::stateful_pointer<presence_state> self,
                                       std::string node_id);

}  // namespace chorus::actors
