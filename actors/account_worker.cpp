// The HTTP API's actors: a pool of detached workers serving api_routes, and the handler net calls.
#include "actors/account_worker.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

namespace chorus::actors {

namespace {

std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

http_response unavailable_response() {
  return {503,
          R"({"error":{"code":"unavailable","message":"the server is busy; try again"}})",
          {{"Retry-After", "1"}}};
}

/// Carries one request to a worker and its answer back to net; lives only as long as that takes.
void relay(caf::event_based_actor* self, account_worker_actor worker, http_request req,
           std::function<void(http_response)> reply, std::chrono::milliseconds timeout) {
  self->request(worker, timeout, atom::api_v, std::move(req))
      .then([reply](http_response& res) { reply(std::move(res)); },
            [reply](caf::error&) { reply(unavailable_response()); });
}

/// Logs PostgreSQL going away or coming back once per change, not once per request.
void note_database(account_worker_actor::stateful_pointer<account_worker_state> self, bool up) {
  auto& st = self->state;
  if (st.database_up == up) return;
  st.database_up = up;
  if (up)
    spdlog::info("account worker: PostgreSQL answers again");
  else
    spdlog::warn("account worker: PostgreSQL unavailable ({}); rooms cannot load and the API answers 503",
                 st.store->last_error());
}

}  // namespace

account_worker_actor::behavior_type account_worker(
    account_worker_actor::stateful_pointer<account_worker_state> self, config::node_config cfg,
    room_directory directory, std::shared_ptr<storage::rate_limiter> limits) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.store = std::make_unique<storage::account_store>(st.cfg.database_url);
  st.limits = std::move(limits);
  st.routes =
      std::make_unique<api_routes>(api_context{*st.store, *st.limits, st.cfg,
                                               [self, directory](room_notice notice) {
                                                 if (directory)
                                                   self->send(directory, atom::notice_v, std::move(notice));
                                               },
                                               wall_ms});
  return {
      [self](atom::api, const http_request& req) -> http_response { return self->state.routes->handle(req); },
      [self](atom::lookup, const std::string& user) -> caf::result<std::string> {
        auto& st = self->state;
        auto found = st.store->get_user(user);
        if (auto* f = std::get_if<storage::store_failure>(&found)) {
          if (f->what == storage::store_failure::not_found)
            return make_error(protocol::error_code::not_found);
          note_database(self, false);
          return make_error(protocol::error_code::unavailable);
        }
        note_database(self, true);
        st.store->touch_last_seen(user);
        return std::string(storage::to_string(std::get<storage::user_row>(found).status));
      },
      [self](atom::gone, const std::string& user) { self->state.store->touch_last_seen(user); },
      [self](atom::access, const std::string& room) -> caf::result<storage::room_access_row> {
        auto& st = self->state;
        auto row = st.store->room_access(room);
        if (auto* f = std::get_if<storage::store_failure>(&row)) {
          if (f->what == storage::store_failure::not_found)
            return make_error(protocol::error_code::not_found);
          note_database(self, false);
          return make_error(protocol::error_code::unavailable);
        }
        note_database(self, true);
        return std::move(std::get<storage::room_access_row>(row));
      },
  };
}

actor_http_handler::actor_http_handler(caf::actor_system& system, std::vector<account_worker_actor> workers,
                                       std::chrono::milliseconds timeout)
    : system_(system), workers_(std::move(workers)), timeout_(timeout) {}

void actor_http_handler::handle(http_request request, std::function<void(http_response)> reply) {
  account_worker_actor worker;
  {
    std::lock_guard lock(mutex_);
    if (!workers_.empty()) worker = workers_[next_.fetch_add(1, std::memory_order_relaxed) % workers_.size()];
  }
  if (!worker) {
    reply(unavailable_response());
    return;
  }
  system_.spawn(relay, std::move(worker), std::move(request), std::move(reply), timeout_);
}

void actor_http_handler::drop_workers() {
  std::lock_guard lock(mutex_);
  workers_.clear();
}

}  // namespace chorus::actors
