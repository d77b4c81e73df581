// A token-bucket rate limiter over an injected clock; one per connection for client operations.
#pragma once

#include <cstdint>

namespace chorus::actors {

/// Allows `burst` operations at once and `rate_per_second` on average. Not thread-safe: owned by one actor.
class token_bucket {
 public:
  token_bucket(std::uint32_t rate_per_second, std::uint32_t burst);

  /// Takes one token at time `now_ms` (any monotonic milliseconds). Returns 0 when allowed, otherwise
  /// the milliseconds until a token will be available (at least 1).
  std::uint32_t take(std::int64_t now_ms);

 private:
  double rate_per_ms_;
  double burst_;
  double tokens_;
  std::int64_t last_ms_;
  bool started_ = false;
};

}  // namespace chorus::actors
