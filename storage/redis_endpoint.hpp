// Where a Redis server is and how Chorus holds hiredis objects: what every synchronous Redis client here
// shares.
#pragma once

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace chorus::storage {

/// A parsed redis:// URL.
struct redis_endpoint {
  std::string host;
  int port = 6379;
  std::string user;
  std::string password;
  int db = 0;
};

/// redis://[[user]:password@]host[:port][/db], IPv6 hosts in brackets, user and password percent-decoded;
/// nullopt for anything else. An empty host means 127.0.0.1.
std::optional<redis_endpoint> parse_redis_url(std::string_view url);

struct redis_context_free {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct redis_reply_free {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_free>;
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_free>;

/// A timeout as hiredis takes it.
timeval to_timeval(std::chrono::milliseconds ms);

}  // namespace chorus::storage
