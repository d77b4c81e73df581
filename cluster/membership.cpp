// The membership actor: registration, heartbeats and rejoining as a new incarnation.
#include "cluster/membership.hpp"

#include <spdlog/spdlog.h>

namespace chorus::cluster {

namespace {

using membership_pointer = actors::membership_actor::stateful_pointer<membership_state>;

void join(membership_pointer self) {
  auto& st = self->state;
  auto result = st.registry->register_self(st.me);
  if (result == outcome::stale_incarnation) {
    st.me.incarnation = new_incarnation();
    result = st.registry->register_self(st.me);
  }
  st.registered = result == outcome::ok;
  if (st.registered)
    spdlog::info("cluster: node {} registered (incarnation {}, client port {}, cluster port {})", st.me.id,
                 st.me.incarnation, st.me.client_port, st.me.cluster_port);
}

void beat(membership_pointer self) {
  auto& st = self->state;
  if (!st.registered) {
    join(self);
  } else if (auto result = st.registry->heartbeat(); result == outcome::lost) {
    spdlog::warn(
        "cluster: node {} was declared down (its registration expired or was replaced); rejoining as "
        "a new incarnation",
        st.me.id);
    st.me.incarnation = new_incarnation();
    st.registered = false;
    join(self);
  }
  if (st.registered && st.directory) {
    if (auto nodes = st.registry->live_nodes()) {
      actors::cluster_view view{st.me.incarnation, {}};
      for (auto& n : *nodes)
        view.nodes.push_back(
            {std::move(n.id), std::move(n.incarnation), std::move(n.host), n.client_port, n.cluster_port});
      self->send(st.directory, atom::nodes_v, std::move(view));
    }
  }
  self->delayed_send(caf::actor_cast<actors::membership_actor>(self), st.interval, atom::heartbeat_v);
}

}  // namespace

actors::membership_actor::behavior_type membership(membership_pointer self,
                                                   std::shared_ptr<node_registry> registry, node_info me,
                                                   std::chrono::milliseconds interval,
                                                   actors::room_directory directory) {
  auto& st = self->state;
  st.registry = std::move(registry);
  st.me = std::move(me);
  st.interval = interval;
  st.directory = std::move(directory);
  // Leaving is done by a functor holding its own reference to the registry, since it runs as the actor ends.
  self->attach_functor([registry = st.registry](const caf::error&) {
    if (registry->leave() == outcome::ok) spdlog::info("cluster: node left the registry");
  });
  beat(self);
  return {
      [self](atom::heartbeat) { beat(self); },
  };
}

}  // namespace chorus::cluster
