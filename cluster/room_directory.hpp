// The room directory: maps a room id to the actor that owns the room. This version places every room locally.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "actors/room_actor.hpp"

namespace chorus::cluster {

struct local_directory_state {
  std::string node_id;  ///< the node every room is placed on
  std::vector<actors::batch_writer_actor> writers;
  actors::room_services services;  ///< given to every room, with the room's own writer filled in
  std::unordered_map<std::string, actors::room_actor> rooms;
  static inline const char* name = "room_directory";
};

/// A directory that creates each room on this node the first time it is looked up. Each room gets one
/// of `writers`, always the same for the same room id. Rooms are linked to the directory, so stopping
/// the directory stops every room. (The cluster-aware directory answers the same `lookup` with a room on
/// whichever node owns it; sessions and rooms do not change.)
actors::room_directory::behavior_type local_directory(
    actors::room_directory::stateful_pointer<local_directory_state> self, std::string node_id,
    std::vector<actors::batch_writer_actor> writers, actors::room_services services);

}  // namespace chorus::cluster
