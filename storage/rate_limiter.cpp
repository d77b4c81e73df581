// Token buckets and lockouts as Lua scripts in Redis over one redis_connection, and the in-process
// equivalent used while Redis cannot be reached.
#include "storage/rate_limiter.hpp"
#include "storage/redis_connection.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace chorus::storage {
namespace {

// Refill accumulates in floating point, so "enough tokens" is judged with a little slack (as in
// actors/token_bucket): a client that waits exactly the advertised time must not be refused again.
constexpr double slack = 1e-9;
constexpr std::uint32_t never = std::numeric_limits<std::uint32_t>::max();

// KEYS[1] bucket; ARGV: tokens per millisecond, burst, cost. Returns {allowed 0|1, wait ms or -1 (never)}.
// Redis's own clock (TIME) is the only clock, so the nodes' clocks need not agree. Redis 7 replicates a
// script's effects, not the script, so reading TIME before writing is allowed. The key expires when the
// bucket would be full again: a full bucket and a missing key mean the same.
constexpr std::string_view take_script = R"lua(
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
elseif now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
local allowed, wait = 0, 0
if tokens + 1e-9 >= cost then
  tokens = math.max(0, tokens - cost)
  allowed = 1
elseif rate <= 0 or cost > burst + 1e-9 then
  wait = -1
else
  wait = math.max(1, math.ceil((cost - 0.5e-9 - tokens) / rate))
end
local ttl = 86400000
if rate > 0 then ttl = math.max(1, math.min(ttl, math.ceil((burst - tokens) / rate))) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, wait}
)lua";

// KEYS[1] failure count, KEYS[2] lock; ARGV: limit (0: never lock), window ms.
// Returns {locked 0|1, ms left, failures}.
constexpr std::string_view failure_script = R"lua(
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {1, left, 0} end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local limit = tonumber(ARGV[1])
if limit > 0 and n >= limit then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return {1, tonumber(ARGV[2]), n}
end
return {0, 0, n}
)lua";

std::uint32_t clamp_ms(double ms) {
  if (!(ms < static_cast<double>(never))) return never;
  return ms <= 0 ? 0 : static_cast<std::uint32_t>(ms);
}

std::uint32_t clamp_ms(long long ms) {
  if (ms < 0) return 0;
  return ms >= static_cast<long long>(never) ? never : static_cast<std::uint32_t>(ms);
}

std::string number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::string("0");
}

// The wait until `cost` tokens are there, aiming half the slack short so round rates give exact waits.
std::uint32_t wait_for(double tokens, double cost, double burst, double rate_per_ms) {
  if (rate_per_ms <= 0 || cost > burst + slack) return never;
  const double wait = std::ceil((cost - slack / 2 - tokens) / rate_per_ms);
  return std::max<std::uint32_t>(1, clamp_ms(wait));
}

// The in-process buckets and lockouts used while Redis is unreachable; same arithmetic as the scripts.
class local_limits {
 public:
  explicit local_limits(std::size_t max_keys) : max_keys_(std::max<std::size_t>(max_keys, 1)) {}

  verdict take(const std::string& key, bucket shape, double cost, std::int64_t now) {
    const double rate = shape.per_second / 1000.0;
    auto [it, fresh] = buckets_.try_emplace(key, entry{shape.burst, now, rate, shape.burst});
    entry& e = it->second;
    e.rate_per_ms = rate;
    e.burst = shape.burst;
    if (!fresh && now > e.last_ms)
      e.tokens = std::min(shape.burst, e.tokens + double(now - e.last_ms) * rate);
    e.last_ms = now;  // a clock that went backwards credits nothing
    verdict v;
    if (e.tokens + slack >= cost) {
      e.tokens = std::max(0.0, e.tokens - cost);
      v.allowed = true;
    } else {
      v.retry_after_ms = wait_for(e.tokens, cost, shape.burst, rate);
    }
    if (fresh && buckets_.size() > max_keys_) sweep(now);
    return v;
  }

  lock_state record_failure(const std::string& key, std::uint32_t limit, std::int64_t window,
                            std::int64_t now) {
    lock& l = locks_[key];
    if (l.locked_until > now) return {true, clamp_ms(static_cast<long long>(l.locked_until - now)), 0};
    if (l.failures_expire <= now) l.failures = 0;
    ++l.failures;
    l.failures_expire = now + window;
    lock_state s{false, 0, l.failures};
    if (limit > 0 && l.failures >= limit) {
      l.locked_until = now + window;
      l.failures = 0;
      s.locked = true;
      s.retry_after_ms = clamp_ms(static_cast<long long>(window));
    }
    if (locks_.size() > max_keys_) sweep(now);
    return s;
  }

  lock_state locked(const std::string& key, std::int64_t now) const {
    auto it = locks_.find(key);
    if (it == locks_.end() || it->second.locked_until <= now) return {};
    return {true, clamp_ms(static_cast<long long>(it->second.locked_until - now)), 0};
  }

  void clear(const std::string& key) { locks_.erase(key); }

 private:
  struct entry {
    double tokens;
    std::int64_t last_ms;
    double rate_per_ms;
    double burst;
  };
  struct lock {
    std::uint32_t failures = 0;
    std::int64_t failures_expire = 0;
    std::int64_t locked_until = 0;
  };

  // Drops what a missing key would mean anyway (full buckets, expired lockouts); if the table is still too
  // big (an address scan), forgets everything rather than grow without bound.
  void sweep(std::int64_t now) {
    std::erase_if(buckets_, [now](const auto& kv) {
      const entry& e = kv.second;
      return e.rate_per_ms > 0 && e.tokens + double(now - e.last_ms) * e.rate_per_ms >= e.burst;
    });
    std::erase_if(locks_, [now](const auto& kv) {
      return kv.second.locked_until <= now && kv.second.failures_expire <= now;
    });
    if (buckets_.size() > max_keys_) buckets_.clear();
    if (locks_.size() > max_keys_) locks_.clear();
  }

  std::size_t max_keys_;
  std::unordered_map<std::string, entry> buckets_;
  std::unordered_map<std::string, lock> locks_;
};

// {int, int[, int]} as the scripts return it.
bool int_array(const redisReply* r, std::size_t n) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < n) return false;
  for (std::size_t i = 0; i < n; ++i)
    if (r->element[i]->type != REDIS_REPLY_INTEGER) return false;
  return true;
}

}  // namespace

struct rate_limiter::impl {
  std::mutex mutex;  ///< one caller at a time: a node's HTTP workers share one limiter (and its local counts)

  impl(std::string_view url, options o)
      : opts(with_clock(std::move(o))),
        local(opts.max_local_keys),
        conn(url, connection_options(opts, "rate limits", "counting locally", "counting there again")) {
    if (url.empty()) spdlog::debug("rate limits: no redis_url; counting locally");
  }

  options opts;
  local_limits local;
  redis_connection conn;
  redis_script take{take_script, 1};
  redis_script failure{failure_script, 2};
  bool last_shared = false;

  static options with_clock(options o) {
    if (!o.now_ms) {
      o.now_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
      };
    }
    return o;
  }

  std::int64_t now() const { return opts.now_ms(); }

  std::string bucket_key(std::string_view key) const { return opts.key_prefix + "tb:" + std::string(key); }
  std::string fail_key(std::string_view key) const {
    return opts.key_prefix + "fail:{" + std::string(key) + "}";
  }
  std::string lock_key(std::string_view key) const {
    return opts.key_prefix + "lock:{" + std::string(key) + "}";
  }

  std::vector<verdict> take_many(std::span<const take_request> requests) {
    std::vector<verdict> out;
    out.reserve(requests.size());
    if (conn.configured()) {
      std::vector<std::vector<std::string>> calls;
      calls.reserve(requests.size());
      for (const auto& r : requests) {
        calls.push_back(
            {bucket_key(r.key), number(r.shape.per_second / 1000.0), number(r.shape.burst), number(r.cost)});
      }
      if (auto replies = conn.eval_many(take, calls)) {
        if (std::ranges::all_of(*replies, [](const auto& r) { return int_array(r.get(), 2); })) {
          for (const auto& r : *replies) {
            const long long wait = r->element[1]->integer;
            out.push_back(verdict{r->element[0]->integer == 1, wait < 0 ? never : clamp_ms(wait)});
          }
          last_shared = true;
          return out;
        }
        conn.down("unexpected reply to the take script");
      }
    }
    last_shared = false;
    const auto t = now();
    for (const auto& r : requests) out.push_back(local.take(std::string(r.key), r.shape, r.cost, t));
    return out;
  }

  lock_state record_failure(std::string_view key, std::uint32_t limit, std::chrono::milliseconds window) {
    const auto window_ms = std::max<std::int64_t>(1, window.count());
    if (conn.configured()) {
      const std::string limit_text = std::to_string(limit), window_text = std::to_string(window_ms);
      if (auto r = conn.eval(failure, {fail_key(key), lock_key(key), limit_text, window_text})) {
        if (int_array(r->get(), 3)) {
          last_shared = true;
          const redisReply* reply = r->get();
          return {reply->element[0]->integer == 1, clamp_ms(reply->element[1]->integer),
                  static_cast<std::uint32_t>(clamp_ms(reply->element[2]->integer))};
        }
        conn.down("unexpected reply to the failure script");
      }
    }
    last_shared = false;
    return local.record_failure(std::string(key), limit, window_ms, now());
  }

  lock_state locked(std::string_view key) {
    if (conn.configured()) {
      if (auto r = conn.command({"PTTL", lock_key(key)})) {
        if ((*r)->type == REDIS_REPLY_INTEGER) {
          last_shared = true;
          if ((*r)->integer > 0) return {true, clamp_ms((*r)->integer), 0};
          return {};
        }
        conn.down("unexpected reply to PTTL");
      }
    }
    last_shared = false;
    return local.locked(std::string(key), now());
  }

  void clear(std::string_view key) {
    // Local state is cleared too, so that a lockout counted during an outage does not outlive a success.
    local.clear(std::string(key));
    if (conn.configured()) {
      if (auto r = conn.command({"DEL", fail_key(key), lock_key(key)})) {
        if ((*r)->type == REDIS_REPLY_INTEGER) {
          last_shared = true;
          return;
        }
        conn.down("unexpected reply to DEL");
      }
    }
    last_shared = false;
  }
};

rate_limiter::rate_limiter(std::string url) : rate_limiter(std::move(url), options{}) {}

rate_limiter::rate_limiter(std::string url, options opts)
    : impl_(std::make_unique<impl>(std::move(url), std::move(opts))) {}

rate_limiter::~rate_limiter() = default;

verdict rate_limiter::take(std::string_view key, bucket shape, double cost) {
  const take_request one{key, shape, cost};
  std::lock_guard lock(impl_->mutex);
  return impl_->take_many(std::span(&one, 1)).front();
}

std::vector<verdict> rate_limiter::take_many(std::span<const take_request> requests) {
  std::lock_guard lock(impl_->mutex);
  return impl_->take_many(requests);
}

lock_state rate_limiter::record_failure(std::string_view key, std::uint32_t limit,
                                        std::chrono::milliseconds window) {
  std::lock_guard lock(impl_->mutex);
  return impl_->record_failure(key, limit, window);
}

lock_state rate_limiter::locked(std::string_view key) {
  std::lock_guard lock(impl_->mutex);
  return impl_->locked(key);
}

void rate_limiter::clear(std::string_view key) {
  std::lock_guard lock(impl_->mutex);
  impl_->clear(key);
}

bool rate_limiter::shared() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->last_shared;
}

}  // namespace chorus::storage
