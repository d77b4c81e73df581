// Token-bucket arithmetic: refill from elapsed injected time, spend one token per operation, compute waits.
#include "actors/token_bucket.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace chorus::actors {
namespace {

// Refill accumulates in floating point, so "one whole token" is judged with a little slack: a client that
// waits exactly the advertised time must not be refused because 0.999999999 tokens accrued.
constexpr double slack = 1e-9;
constexpr std::uint32_t max_wait_ms = std::numeric_limits<std::uint32_t>::max();

}  // namespace

token_bucket::token_bucket(std::uint32_t rate_per_second, std::uint32_t burst)
    : rate_per_ms_(static_cast<double>(rate_per_second) / 1000.0),
      // A zero burst could never hold a whole token and would refuse everything forever.
      burst_(static_cast<double>(std::max<std::uint32_t>(burst, 1))),
      tokens_(burst_),
      last_ms_(0) {}

std::uint32_t token_bucket::take(std::int64_t now_ms) {
  if (!started_) {
    started_ = true;
    last_ms_ = now_ms;
    tokens_ = burst_;
  } else if (now_ms > last_ms_) {
    // Unsigned subtraction: the difference of two int64 values can overflow int64 but not uint64.
    const auto elapsed =
        static_cast<double>(static_cast<std::uint64_t>(now_ms) - static_cast<std::uint64_t>(last_ms_));
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_per_ms_);
    last_ms_ = now_ms;
  } else {
    // A clock that went backwards credits nothing; following it (rather than waiting for it to catch up
    // with the old reading) keeps a clock reset from freezing refills for as long as the jump was.
    last_ms_ = now_ms;
  }

  if (tokens_ + slack >= 1.0) {
    tokens_ = std::max(0.0, tokens_ - 1.0);
    return 0;
  }
  if (rate_per_ms_ <= 0.0) return max_wait_ms;
  // Aim half the slack short of a whole token, so the advertised wait is exact for round rates yet still
  // lands inside the slack that the check above allows.
  const double wait = std::ceil((1.0 - slack / 2 - tokens_) / rate_per_ms_);
  if (!(wait < static_cast<double>(max_wait_ms))) return max_wait_ms;
  return std::max<std::uint32_t>(1, static_cast<std::uint32_t>(wait));
}

}  // namespace chorus::actors
