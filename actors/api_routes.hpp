// The HTTP API of accounts, users, rooms and members: routing, validation, authorisation, JSON in and out.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/http_port.hpp"
#include "actors/room_notice.hpp"
#include "config/config.hpp"
#include "storage/account_store.hpp"
#include "storage/rate_limiter.hpp"

namespace chorus::actors {

/// One route: what openapi.yaml must describe.
struct route_spec {
  std::string_view method;
  std::string_view pattern;  ///< e.g. "/api/v1/rooms/{id}/members/{user_id}"
};

/// Everything the routes touch. The store and the limiter are the calling worker's own (neither is
/// thread-safe); `notify` tells live room actors about changes after they are committed.
struct api_context {
  storage::account_store& store;
  storage::rate_limiter& limits;
  const config::node_config& cfg;
  std::function<void(room_notice)> notify;
  std::function<std::int64_t()> now_ms;  ///< wall clock; injected so tests can move it
};

/// Serves one request at a time; blocking (PostgreSQL, Redis, password hashing), so it runs on a detached
/// worker. Every failure is a JSON error with a stable code, and a refused request changes nothing.
class api_routes {
 public:
  explicit api_routes(api_context ctx);
  http_response handle(const http_request& req);

  /// Every route served, for the OpenAPI coverage test.
  static const std::vector<route_spec>& routes();

 private:
  api_context ctx_;
};

}  // namespace chorus::actors
