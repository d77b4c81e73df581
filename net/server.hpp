// The node's network front: one HTTP + WebSocket listener, its event-loop threads, and graceful shutdown.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "actors/session_port.hpp"
#include "config/config.hpp"

namespace chorus::net {

/// Counters for /healthz and logs; read from any thread.
struct server_stats {
  std::uint64_t open_connections = 0;
  std::uint64_t accepted_total = 0;
};

/// Serves `GET /healthz` and the WebSocket upgrade at `/ws`; every other target gets 404.
/// Each upgraded connection is handed to `sessions.open()`.
///
/// Threading: start(), wait_for_signal() and stop() are called from one controlling thread;
/// the server runs `cfg.io_threads` threads of its own between start() and stop().
class server {
 public:
  server(const config::node_config& cfg, actors::session_factory& sessions);
  ~server();  ///< stops if still running
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds, starts accepting and starts the io threads. Returns the bound port (useful with port 0).
  /// Throws std::runtime_error naming the address when it cannot bind.
  std::uint16_t start();

  /// Blocks until SIGINT or SIGTERM arrives (or stop() is called from another thread).
  void wait_for_signal();

  /// Graceful shutdown: stop accepting, close every WebSocket with 1001 (going away) after what is
  /// already queued, wait up to shutdown_timeout_ms for connections to finish, then stop the io threads.
  /// Returns the number of connections that had to be cut off at the deadline.
  std::size_t stop();

  server_stats stats() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace chorus::net
