// The node's network front: one HTTP + WebSocket listener, its event-loop threads, and graceful shutdown.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "actors/http_port.hpp"
#include "actors/session_port.hpp"
#include "config/config.hpp"

namespace chorus::net {

/// Counters for /healthz and logs; read from any thread.
struct server_stats {
  std::uint64_t open_connections = 0;
  std::uint64_t accepted_total = 0;
  std::uint64_t slow_consumers_closed = 0;  ///< WebSocket connections closed with 4008 since start
  std::uint64_t reads_paused = 0;  ///< times a connection was not read because its session was behind
};

/// Serves `GET /healthz`, `GET /metrics` (the text `metrics` returns followed by the server's own counters,
/// for Prometheus; 404 without it), the
/// WebSocket upgrade at `/ws` and the HTTP API under `/api/`; every other target gets 404. Each upgraded
/// connection is handed to `sessions.open()`; each request whose path starts with `/api/` goes to
/// `api->handle()` (404 when there is no handler).
///
/// HTTP: persistent connections (one request at a time: the next is read once the answer is written),
/// bodies up to `cfg.max_body_bytes` under /api/ (8 KiB elsewhere; larger gets 413 without the body being
/// read), a keep-alive connection idle for `cfg.idle_timeout_ms` is closed. Every error body is
/// `{"error":{"code":"...","message":"..."}}`.
///
/// Threading: start(), wait_for_signal() and stop() are called from one controlling thread;
/// the server runs `cfg.io_threads` threads of its own between start() and stop().
/// Lifetimes: `sessions` and `api` must outlive stop() (or the destructor); once stop() has returned,
/// neither is called again, and a `reply` still held by the API is safe to call: it does nothing.
class server {
 public:
  /// `metrics` is called on an io thread for every GET /metrics, so it must be quick and thread-safe.
  server(const config::node_config& cfg, actors::session_factory& sessions,
         actors::http_handler* api = nullptr, std::function<std::string()> metrics = {});
  ~server();  ///< stops if still running
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds, starts accepting and starts the io threads. Returns the bound port (useful with port 0).
  /// Throws std::runtime_error naming the address when it cannot bind.
  std::uint16_t start();

  /// Blocks until SIGINT or SIGTERM arrives, request_shutdown() is called, or stop() is called from another
  /// thread.
  void wait_for_signal();

  /// Closes the listening socket: new connections are refused (a draining node sends clients elsewhere), open
  /// ones carry on until stop(). Same thread as start() and stop().
  void stop_accepting();

  /// Ends wait_for_signal() as a SIGTERM would (an operator's drain request does this). Any thread.
  void request_shutdown();

  /// Closes every WebSocket with 1012 (service restart) and keeps serving: for a node that was declared
  /// down and rejoined, whose sessions' rooms have moved. Returns the number of connections asked. Any
  /// thread, between start() and stop().
  std::size_t restart_sessions();

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
