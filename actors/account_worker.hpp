// Account workers (detached actors running api_routes and serving rooms' access rules) and net's way to them.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "actors/api_routes.hpp"
#include "actors/messages.hpp"

namespace chorus::actors {

struct account_worker_state {
  config::node_config cfg;
  std::unique_ptr<storage::account_store> store;
  std::shared_ptr<storage::rate_limiter> limits;  ///< the node's, shared by its workers
  std::unique_ptr<api_routes> routes;
  bool database_up = true;  ///< as last seen by a room's access read; a change is logged once

  static inline const char* name = "account_worker";
};

/// One worker: its own PostgreSQL connection (cfg.database_url); `limits` is the node's, shared by every
/// worker. Spawn it `caf::detached`: requests block on PostgreSQL, Redis and password hashing. Changes to
/// rooms go to `directory`, which passes them to the room's actor if it is running.
account_worker_actor::behavior_type account_worker(
    account_worker_actor::stateful_pointer<account_worker_state> self, config::node_config cfg,
    room_directory directory, std::shared_ptr<storage::rate_limiter> limits);

/// What net calls for `/api/...`: each request goes to the next worker in turn; a worker that does not
/// answer within `timeout` costs the client a 503, never a hung connection.
class actor_http_handler final : public http_handler {
 public:
  actor_http_handler(caf::actor_system& system, std::vector<account_worker_actor> workers,
                     std::chrono::milliseconds timeout);
  void handle(http_request request, std::function<void(http_response)> reply) override;
  /// Forgets the workers (a detached actor's thread ends only when every handle is gone); requests that
  /// still arrive are answered 503.
  void drop_workers();

 private:
  caf::actor_system& system_;
  std::mutex mutex_;  ///< guards workers_ against drop_workers() during shutdown
  std::vector<account_worker_actor> workers_;
  std::chrono::milliseconds timeout_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace chorus::actors
