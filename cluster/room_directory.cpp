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
  // A room stops by itself when it turns out not to exist or is deleted; forget it, so the next lookup
  // starts afresh. (Linked rooms stop with the directory; a room that ends normally does not stop it.)
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& rooms = self->state.rooms;
    for (auto it = rooms.begin(); it != rooms.end(); ++it)
      if (it->second.address() == msg.source) {
        rooms.erase(it);
        break;
      }
  });
  return {
      [self](atom::lookup, const std::string& id) {
        auto& st = self->state;
        auto it = st.rooms.find(id);
        if (it == st.rooms.end()) {
          auto services = st.services;
          services.writer = st.writers[std::hash<std::string>{}(id) % st.writers.size()];
          auto room = self->spawn<caf::linked>(actors::room, id, std::move(services));
          self->monitor(room);
          it = st.rooms.emplace(id, std::move(room)).first;
        }
        return it->second;
      },
      [self](atom::notice, actors::room_notice& notice) {
        if (auto it = self->state.rooms.find(notice.room); it != self->state.rooms.end())
          self->send(it->second, atom::notice_v, std::move(notice));
      },
  };
}

}  // namespace chorus::cluster
