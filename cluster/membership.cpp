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

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Publishes this node's figures for chorusctl stats (when it counts them).
void publish_stats(membership_pointer self) {
  auto& st = self->state;
  if (!st.counters) return;
  constexpr auto relaxed = std::memory_order_relaxed;
  st.registry->publish_stats({st.counters->rooms.load(relaxed), st.counters->connections.load(relaxed),
                              st.counters->messages_stored.load(relaxed), wall_ms(), st.draining});
}

/// Starts draining the first time an operator asks this incarnation to (chorusctl drain).
void check_drain(membership_pointer self) {
  auto& st = self->state;
  if (st.draining || !st.hooks.drain) return;
  auto requested = st.registry->drain_requested();
  if (!requested || !*requested) return;
  spdlog::info("cluster: an operator asked node {} to drain", st.me.id);
  st.draining = true;
  publish_stats(self);  // chorusctl shows it draining at once
  st.hooks.drain();
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
    // Peers dropped this node's sessions from their rooms while it was out: its clients start afresh.
    if (st.hooks.rejoined) st.hooks.rejoined();
  }
  if (st.registered) {
    publish_stats(self);
    check_drain(self);
  }
  if (st.registered && st.directory) {
    if (auto nodes = st.registry->live_nodes()) {
      actors::cluster_view view{st.me.incarnation, {}};
      for (auto& n : *nodes)
        view.nodes.push_back({std::move(n.id), std::move(n.incarnation), std::move(n.host), n.client_port,
                              n.cluster_port, n.wire_version});
      self->send(st.directory, atom::nodes_v, std::move(view));
    }
  }
  self->delayed_send(caf::actor_cast<actors::membership_actor>(self), st.interval, atom::heartbeat_v);
}

}  // namespace

std::optional<std::vector<node_info>> incompatible_nodes(node_registry& registry, const node_info& me) {
  auto nodes = registry.live_nodes();
  if (!nodes) return std::nullopt;
  std::erase_if(*nodes,
                [&](const node_info& n) { return n.id == me.id || n.wire_version == me.wire_version; });
  return nodes;
}

actors::membership_actor::behavior_type membership(membership_pointer self,
                                                   std::shared_ptr<node_registry> registry, node_info me,
                                                   std::chrono::milliseconds interval,
                                                   actors::room_directory directory,
                                                   std::shared_ptr<const actors::node_counters> counters,
                                                   membership_hooks hooks) {
  auto& st = self->state;
  st.registry = std::move(registry);
  st.me = std::move(me);
  st.interval = interval;
  st.directory = std::move(directory);
  st.counters = std::move(counters);
  st.hooks = std::move(hooks);
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
