// The local room directory: one room actor per room id, spawned on first lookup.
#include "cluster/room_directory.hpp"

#include "actors/room_actor.hpp"

namespace chorus::cluster {

actors::room_directory::behavior_type local_directory(
    actors::room_directory::stateful_pointer<local_directory_state> self, std::string node_id) {
  self->state.node_id = std::move(node_id);
  return {
      [self](atom::lookup, const std::string& id) {
        auto& rooms = self->state.rooms;
        auto it = rooms.find(id);
        if (it == rooms.end()) it = rooms.emplace(id, self->spawn<caf::linked>(actors::room, id)).first;
        return it->second;
      },
  };
}

}  // namespace chorus::cluster
