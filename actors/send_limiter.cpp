// The send limiter actor: per-user message buckets in Redis, asked in pipelined rounds.
#include "actors/send_limiter.hpp"

namespace chorus::actors {

namespace {

using limiter_pointer = send_limiter_actor::stateful_pointer<send_limiter_state>;

void flush(limiter_pointer self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.users.empty()) return;
  auto users = std::move(st.users);
  auto waiting = std::move(st.waiting);
  st.users.clear();
  st.waiting.clear();
  std::vector<std::string> keys;
  std::vector<storage::take_request> round;
  keys.reserve(users.size());
  round.reserve(users.size());
  for (auto& user : users) keys.push_back(send_limit_key(user));
  for (auto& key : keys) round.push_back({key, st.shape, 1.0});
  auto verdicts = st.limits->take_many(round);
  for (std::size_t i = 0; i < waiting.size(); ++i)
    waiting[i].deliver(verdicts[i].allowed ? std::uint32_t{0}
                                           : std::max<std::uint32_t>(verdicts[i].retry_after_ms, 1));
}

}  // namespace

send_limiter_actor::behavior_type send_limiter(limiter_pointer self, std::string redis_url,
                                               storage::bucket shape) {
  self->state.limits = std::make_unique<storage::rate_limiter>(std::move(redis_url));
  self->state.shape = shape;
  return {
      [self](atom::limit, std::string& user) -> caf::result<std::uint32_t> {
        auto& st = self->state;
        st.users.push_back(std::move(user));
        auto rp = self->make_response_promise<std::uint32_t>();
        st.waiting.push_back(rp);
        if (!st.flush_scheduled) {
          st.flush_scheduled = true;
          // Queued behind what is already in the mailbox: one round takes everything that is waiting.
          self->send(caf::actor_cast<send_limiter_actor>(self), atom::flush_v);
        }
        return rp;
      },
      [self](atom::flush) { flush(self); },
  };
}

}  // namespace chorus::actors
