// The presence actor: per-node counts in memory, or cluster-wide ones through storage::presence_store.
#include "actors/presence_actor.hpp"

#include <spdlog/spdlog.h>

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
      [](atom::heartbeat) {},  // nothing expires in memory
  };
}

namespace {

using shared_pointer = presence_actor::stateful_pointer<shared_presence_state>;

caf::result<bool> enqueue(shared_pointer self, const std::string& user, bool opened) {
  auto& st = self->state;
  st.changes.push_back({user, opened});
  auto rp = self->make_response_promise<bool>();
  st.waiting.push_back(rp);
  if (st.flushes_queued == 0) {
    // Queued behind what is already in the mailbox: one round takes everything that is waiting.
    ++st.flushes_queued;
    self->send(caf::actor_cast<presence_actor>(self), atom::heartbeat_v);
  }
  return rp;
}

void run_round(shared_pointer self) {
  auto& st = self->state;
  if (st.changes.empty()) return;
  auto changes = std::move(st.changes);
  auto waiting = std::move(st.waiting);
  st.changes.clear();
  st.waiting.clear();
  const auto answers = st.store->apply(changes);
  for (std::size_t i = 0; i < waiting.size(); ++i) waiting[i].deliver(bool{answers[i]});
}

}  // namespace

presence_actor::behavior_type shared_presence(shared_pointer self,
                                              std::shared_ptr<storage::presence_store> store,
                                              std::chrono::milliseconds refresh_interval) {
  auto& st = self->state;
  st.store = std::move(store);
  st.refresh_interval = refresh_interval;
  // Runs as the actor ends (any reason), with a reference of its own since the state may be gone by then.
  self->attach_functor([store = st.store](const caf::error&) {
    if (store->clear()) spdlog::debug("presence: this node's users are offline in Redis");
  });
  self->send(caf::actor_cast<presence_actor>(self), atom::heartbeat_v);  // the timer's first beat
  return {
      [self](atom::connected, const std::string& user) { return enqueue(self, user, true); },
      [self](atom::gone, const std::string& user) { return enqueue(self, user, false); },
      [self](atom::heartbeat) {
        auto& st = self->state;
        run_round(self);
        if (st.flushes_queued > 0) {
          --st.flushes_queued;
          return;
        }
        // Whichever heartbeat stands for the timer arrives no sooner than the timer was due. One that comes
        // earlier was sent by someone else: re-arming for it would start a second timer.
        const auto now = self->clock().now();  // the clock delayed_send goes by (a test may drive it)
        if (now < st.refresh_due) return;
        st.store->refresh();                         // failures are logged by the store, once per outage
        st.refresh_due = now + st.refresh_interval;  // before arming: never later than the timer fires
        self->delayed_send(caf::actor_cast<presence_actor>(self), st.refresh_interval, atom::heartbeat_v);
      },
  };
}

presence_actor spawn_presence(caf::actor_system& system, const config::node_config& cfg) {
  if (cfg.redis_url.empty()) return system.spawn(presence, cfg.node_id);
  storage::presence_store::options opts;
  // Three missed node TTLs, like a node entry three times over: a node is long dead (not just slow) before
  // its users go offline by expiry, while a clean shutdown removes them at once.
  opts.ttl = std::chrono::milliseconds(3 * static_cast<std::int64_t>(cfg.node_ttl_ms));
  auto store = std::make_shared<storage::presence_store>(cfg.redis_url, cfg.node_id, opts);
  return system.spawn<caf::detached>(shared_presence, std::move(store),
                                     std::chrono::milliseconds(cfg.node_heartbeat_ms));
}

}  // namespace chorus::actors
