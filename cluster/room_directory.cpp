// The local room directory: one room actor per room id, spawned on first lookup.
#include "cluster/room_directory.hpp"

#include <functional>

namespace chorus::cluster {

actors::room_directory::behavior_type local_directory(
    actors::room_directory::stateful_pointer<local_directory_state> self, std::string node_id,
    std::vector<actors::batch_writer_actor> writers, actors::room_services services) {
  auto& st = self->state;
  st.node_id = std::move(node_id);
  st.writers = std::move(writers);
  st.services = std::move(services);
  return {
      [self](atom::lookup, const std::string& id) {
        auto& st = self->state;
        auto it = st.rooms.find(id);
        if (it == st.rooms.end()) {
          auto services = st.services;
          services.writer = st.writers[std::hash<std::string>{}(id) % st.writers.size()];
          it = st.rooms.emplace(id, self->spawn<caf::linked>(actors::room, id, std::move(services))).first;
        }
        return it->second;
      },
  };
}

}  // namespace chorus::cluster
