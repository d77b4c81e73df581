// Rate limits shared by every node through Redis, with in-process buckets while Redis is unreachable. No CAF.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::storage {

/// A token bucket's shape: `burst` tokens at once, refilled at `per_second`.
struct bucket {
  double per_second = 1;
  double burst = 1;
};

/// The answer to one take(): allowed, or refused with the milliseconds until enough tokens have refilled.
struct verdict {
  bool allowed = false;
  std::uint32_t retry_after_ms = 0;  ///< 0 when allowed; at least 1 otherwise (UINT32_MAX: never)
};

/// One request of a take_many() batch.
struct take_request {
  std::string_view key;
  bucket shape;
  double cost = 1;
};

/// Where a login lockout stands for one key.
struct lock_state {
  bool locked = false;
  std::uint32_t retry_after_ms = 0;  ///< how long the lockout still lasts; 0 when not locked
  std::uint32_t failures = 0;        ///< record_failure: failures in a row, this one included; else 0
};

/// Token buckets and login lockouts, kept in Redis so that they hold across nodes.
///
/// Thread-safe, one call at a time: a node's HTTP workers share one limiter, so that its local counts (when
/// Redis is away) are the node's, not each worker's. It holds one synchronous hiredis connection. Redis calls
/// are bounded by short connect/command timeouts. When Redis is unreachable (or the URL is empty) the limiter
/// counts in process instead and logs the change once; it tries Redis again after a backoff that doubles up
/// to `max_backoff`, and logs once when Redis is back. Nothing here throws because of Redis: limits never
/// stop a node from serving.
///
/// Keys are namespaced under `key_prefix` ("chorus:rl:" by default): a bucket is `<prefix>tb:<key>`, a
/// lockout `<prefix>fail:{<key>}` and `<prefix>lock:{<key>}`. Bucket keys expire once they would be full.
class rate_limiter {
 public:
  struct options {
    std::chrono::milliseconds connect_timeout{100};
    std::chrono::milliseconds command_timeout{100};
    std::chrono::milliseconds min_backoff{250};  ///< first wait before retrying an unreachable Redis
    std::chrono::milliseconds max_backoff{5000};
    std::string key_prefix = "chorus:rl:";
    std::string client_name = "chorus-rate-limiter";  ///< CLIENT SETNAME, for CLIENT LIST; empty: none
    std::size_t max_local_keys = 100000;              ///< local buckets kept before full ones are swept
    /// Monotonic milliseconds for the local buckets and the backoff; tests inject their own.
    std::function<std::int64_t()> now_ms;
  };

  /// `url`: redis://[[user]:password@]host[:port][/db]; empty: local buckets only (logged once, at debug).
  explicit rate_limiter(std::string url);
  rate_limiter(std::string url, options opts);
  ~rate_limiter();
  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;

  /// Takes `cost` tokens from the bucket `key` (created full), atomically in Redis (a Lua script using
  /// Redis's clock, so nodes' clocks do not matter). A refused take spends nothing.
  verdict take(std::string_view key, bucket shape, double cost = 1);

  /// take() for many keys in one pipelined round trip; the verdicts are in request order.
  std::vector<verdict> take_many(std::span<const take_request> requests);

  /// Counts one failed attempt for `key`. Failures expire `window` after the latest one; the `limit`-th
  /// failure in a row locks the key for `window` (and resets the count); a `limit` of 0 never locks. While
  /// locked, nothing is counted and the remaining time is returned.
  lock_state record_failure(std::string_view key, std::uint32_t limit, std::chrono::milliseconds window);

  /// Whether `key` is locked now, and for how much longer.
  lock_state locked(std::string_view key);

  /// Forgets failures and any lockout of `key` (a successful login).
  void clear(std::string_view key);

  /// True when the most recent call was answered by Redis (false: counted locally).
  bool shared() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace chorus::storage
