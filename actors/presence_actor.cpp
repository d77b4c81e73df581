// The presence actor: per-user connection counts on this node.
#include "actors/presence_actor.hpp"

namespace chorus::actors {

presence_actor::behavior_type presence(presence_actor::stateful_pointer<presence_state> self,
                                       std::string node_id) {
  self->state.node_id = std::move(node_id);
  return {
      [self](atom::connected, const std::string& user) { return self->state.connections[user]++ == 0; },
      [self](atom::gone, const std::string& user) {
        auto& counts = self->state.connections;
        auto it = counts.find(user);
        if (it == counts.end()) return false;
        if (--it->second > 0) return false;
        counts.erase(it);
        return true;
      },
  };
}

}  // namespace chorus::actors
