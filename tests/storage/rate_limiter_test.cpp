// Tests for the Redis rate limiter (label redis; CHORUS_REDIS_URL from scripts/services.sh): buckets, refill,
// sharing between nodes, lockouts, pipelining, NOSCRIPT recovery, and the local fallback when Redis is down.
#include "storage/rate_limiter.hpp"
#include "tests/support/redis_probe.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using chorus::storage::bucket;
using chorus::storage::rate_limiter;
using chorus::storage::take_request;
using chorus::storage::verdict;
using chorus::testing::log_capture;
using chorus::testing::raw_redis;
using chorus::testing::redis_url;
using chorus::testing::unreachable_url;

// Unique per process and per call, so reruns and parallel runs never share a key.
std::string unique_key(std::string_view name) {
  static const auto run = std::chrono::steady_clock::now().time_since_epoch().count();
  static int counter = 0;
  return "test:" + std::to_string(::getpid()) + "-" + std::to_string(run) + "-" + std::to_string(++counter) +
         ":" + std::string(name);
}

class RateLimiter : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = redis_url();
    if (url_.empty()) GTEST_SKIP() << "CHORUS_REDIS_URL is not set (scripts/services.sh env)";
  }
  std::string url_;
};

TEST_F(RateLimiter, BurstThenRefusalWithPlausibleRetryAfter) {
  rate_limiter rl(url_);
  const auto key = unique_key("burst");
  for (int i = 0; i < 5; ++i) {
    const verdict v = rl.take(key, bucket{10, 5});
    EXPECT_TRUE(v.allowed) << i;
    EXPECT_EQ(v.retry_after_ms, 0u);
  }
  EXPECT_TRUE(rl.shared());
  const verdict refused = rl.take(key, bucket{10, 5});
  EXPECT_FALSE(refused.allowed);
  EXPECT_GE(refused.retry_after_ms, 1u);
  EXPECT_LE(refused.retry_after_ms, 100u);  // one token at 10/s
  // A cost larger than the burst can never be paid.
  EXPECT_EQ(rl.take(unique_key("huge"), bucket{10, 5}, 6).retry_after_ms, UINT32_MAX);
}

TEST_F(RateLimiter, WaitingTheAdvertisedTimeIsEnough) {
  rate_limiter rl(url_);
  const auto key = unique_key("refill");
  const bucket shape{20, 2};  // one token per 50 ms
  ASSERT_TRUE(rl.take(key, shape).allowed);
  ASSERT_TRUE(rl.take(key, shape).allowed);
  const verdict refused = rl.take(key, shape);
  ASSERT_FALSE(refused.allowed);
  EXPECT_GE(refused.retry_after_ms, 30u);
  EXPECT_LE(refused.retry_after_ms, 50u);
  // Redis's clock decides; it cannot be mocked, so this one test waits (50 ms at most).
  std::this_thread::sleep_for(std::chrono::milliseconds(refused.retry_after_ms));
  EXPECT_TRUE(rl.take(key, shape).allowed);
  EXPECT_FALSE(rl.take(key, shape).allowed);
}

TEST_F(RateLimiter, TwoNodesShareOneBucket) {
  rate_limiter node_a(url_);
  rate_limiter node_b(url_);
  const auto key = unique_key("shared");
  const bucket shape{1, 4};
  EXPECT_TRUE(node_a.take(key, shape).allowed);
  EXPECT_TRUE(node_b.take(key, shape).allowed);
  EXPECT_TRUE(node_a.take(key, shape).allowed);
  EXPECT_TRUE(node_b.take(key, shape).allowed);
  EXPECT_FALSE(node_a.take(key, shape).allowed);
  EXPECT_FALSE(node_b.take(key, shape).allowed);
  EXPECT_TRUE(node_a.shared() && node_b.shared());
}

TEST_F(RateLimiter, KeysAreIndependent) {
  rate_limiter rl(url_);
  const auto user = unique_key("user:alice");
  const auto ip = unique_key("ip:10.0.0.1");
  ASSERT_TRUE(rl.take(user, bucket{1, 1}).allowed);
  EXPECT_FALSE(rl.take(user, bucket{1, 1}).allowed);
  EXPECT_TRUE(rl.take(ip, bucket{1, 1}).allowed);
}

TEST_F(RateLimiter, BucketKeysExpireWhenFull) {
  rate_limiter rl(url_);
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  const auto key = unique_key("expiry");
  ASSERT_TRUE(rl.take(key, bucket{2, 10}).allowed);  // one token short: full again in 500 ms
  const int ttl = std::stoi(raw.run({"PTTL", "chorus:rl:tb:" + key}));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 500);
}

TEST_F(RateLimiter, LockoutAfterRepeatedFailuresClearedByClear) {
  rate_limiter rl(url_);
  rate_limiter other_node(url_);
  const auto key = unique_key("login:alice");
  auto s = rl.record_failure(key, 3, 60s);
  EXPECT_FALSE(s.locked);
  EXPECT_EQ(s.failures, 1u);
  s = rl.record_failure(key, 3, 60s);
  EXPECT_FALSE(s.locked);
  EXPECT_EQ(s.failures, 2u);
  EXPECT_FALSE(rl.locked(key).locked);
  s = other_node.record_failure(key, 3, 60s);  // failures count across nodes
  EXPECT_TRUE(s.locked);
  EXPECT_EQ(s.retry_after_ms, 60000u);
  EXPECT_EQ(s.failures, 3u);

  auto l = rl.locked(key);
  EXPECT_TRUE(l.locked);
  EXPECT_GT(l.retry_after_ms, 59000u);
  EXPECT_LE(l.retry_after_ms, 60000u);
  s = rl.record_failure(key, 3, 60s);  // while locked nothing more is counted
  EXPECT_TRUE(s.locked);
  EXPECT_EQ(s.failures, 0u);
  EXPECT_TRUE(rl.shared());

  other_node.clear(key);
  EXPECT_FALSE(rl.locked(key).locked);
  s = rl.record_failure(key, 3, 60s);
  EXPECT_FALSE(s.locked);
  EXPECT_EQ(s.failures, 1u);
  EXPECT_FALSE(rl.locked(unique_key("login:bob")).locked);
}

TEST_F(RateLimiter, PipelinedTakeManyMatchesOneByOne) {
  rate_limiter batch(url_);
  rate_limiter single(url_);
  const std::string a1 = unique_key("a"), b1 = unique_key("b");  // for take_many
  const std::string a2 = unique_key("a"), b2 = unique_key("b");  // for take
  const bucket shape{1, 3};
  const std::vector<int> which{0, 0, 1, 0, 0, 1, 1, 1, 1, 0};
  std::vector<take_request> requests;
  for (int w : which) requests.push_back({w == 0 ? std::string_view(a1) : std::string_view(b1), shape, 1});
  const auto many = batch.take_many(requests);
  ASSERT_EQ(many.size(), which.size());
  EXPECT_TRUE(batch.shared());
  for (std::size_t i = 0; i < which.size(); ++i) {
    const verdict one = single.take(which[i] == 0 ? a2 : b2, shape);
    EXPECT_EQ(many[i].allowed, one.allowed) << i;
    EXPECT_NEAR(double(many[i].retry_after_ms), double(one.retry_after_ms), 100.0) << i;
  }
  EXPECT_TRUE(batch.take_many({}).empty());
}

TEST_F(RateLimiter, ReloadsItsScriptAfterScriptFlush) {
  rate_limiter rl(url_);
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  const auto key = unique_key("noscript");
  ASSERT_TRUE(rl.take(key, bucket{1, 2}).allowed);
  ASSERT_EQ(raw.run({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_TRUE(rl.take(key, bucket{1, 2}).allowed);
  EXPECT_TRUE(rl.shared());  // answered by Redis after reloading, not by the fallback
  EXPECT_FALSE(rl.take(key, bucket{1, 2}).allowed);
  ASSERT_EQ(raw.run({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_FALSE(rl.record_failure(unique_key("noscript-lock"), 2, 1s).locked);
  EXPECT_TRUE(rl.shared());
}

TEST_F(RateLimiter, FallsBackWhenItsConnectionDiesAndLogsBothChangesOnce) {
  log_capture logs;
  rate_limiter::options opts;
  opts.min_backoff = 0ms;  // retry Redis on every call
  opts.client_name = "rltest-" + std::to_string(::getpid()) + "-" + unique_key("n").substr(5, 20);
  std::replace(opts.client_name.begin(), opts.client_name.end(), ':', '-');
  rate_limiter rl(url_, opts);
  const auto key = unique_key("killed");
  ASSERT_TRUE(rl.take(key, bucket{1, 100}).allowed);
  ASSERT_TRUE(rl.shared());

  // Kill exactly the limiter's connection, found by its name.
  raw_redis raw(url_);
  ASSERT_TRUE(raw.ok());
  std::istringstream clients(raw.run({"CLIENT", "LIST"}));
  std::string line, id;
  while (std::getline(clients, line)) {
    if (line.find(" name=" + opts.client_name + " ") == std::string::npos) continue;
    id = line.substr(3, line.find(' ') - 3);
  }
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(raw.run({"CLIENT", "KILL", "ID", id}), "1");

  EXPECT_TRUE(rl.take(key, bucket{1, 100}).allowed);  // the broken connection: counted locally
  EXPECT_FALSE(rl.shared());
  EXPECT_EQ(logs.count("unreachable"), 1);
  EXPECT_TRUE(rl.take(key, bucket{1, 100}).allowed);  // reconnected
  EXPECT_TRUE(rl.shared());
  EXPECT_TRUE(rl.take(key, bucket{1, 100}).allowed);
  EXPECT_EQ(logs.count("unreachable"), 1);
  EXPECT_EQ(logs.count("is back"), 1);
}

// --- without Redis (no CHORUS_REDIS_URL needed) ---------------------------------------------------------

TEST(RateLimiterFallback, UnreachableRedisStillLimitsAndNeverThrows) {
  log_capture logs;
  std::int64_t now = 1'000'000;
  rate_limiter::options opts;
  opts.now_ms = [&now] { return now; };
  opts.min_backoff = 0ms;  // try the closed port on every call: still one log line
  rate_limiter rl(unreachable_url, opts);
  const auto key = unique_key("local");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(rl.take(key, bucket{10, 3}).allowed) << i;
  const verdict refused = rl.take(key, bucket{10, 3});
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_ms, 100u);
  EXPECT_FALSE(rl.shared());
  now += 99;
  EXPECT_FALSE(rl.take(key, bucket{10, 3}).allowed);
  now += 1;
  EXPECT_TRUE(rl.take(key, bucket{10, 3}).allowed);
  EXPECT_TRUE(rl.take(unique_key("other"), bucket{10, 3}).allowed);

  // take_many agrees with take in local mode too.
  const auto k = unique_key("local-many");
  const std::vector<take_request> reqs(3, take_request{k, bucket{1, 2}, 1});
  const auto many = rl.take_many(reqs);
  ASSERT_EQ(many.size(), 3u);
  EXPECT_TRUE(many[0].allowed && many[1].allowed);
  EXPECT_FALSE(many[2].allowed);
  EXPECT_EQ(many[2].retry_after_ms, 1000u);

  // Lockouts work locally, expire, and clear.
  const auto login = unique_key("login");
  EXPECT_FALSE(rl.record_failure(login, 2, 1000ms).locked);
  auto s = rl.record_failure(login, 2, 1000ms);
  EXPECT_TRUE(s.locked);
  EXPECT_EQ(s.retry_after_ms, 1000u);
  now += 400;
  EXPECT_EQ(rl.locked(login).retry_after_ms, 600u);
  now += 600;
  EXPECT_FALSE(rl.locked(login).locked);
  EXPECT_FALSE(rl.record_failure(login, 2, 1000ms).locked);
  EXPECT_TRUE(rl.record_failure(login, 2, 1000ms).locked);
  rl.clear(login);
  EXPECT_FALSE(rl.locked(login).locked);
  EXPECT_EQ(rl.record_failure(login, 2, 1000ms).failures, 1u);
  EXPECT_FALSE(rl.record_failure(unique_key("never"), 0, 1000ms).locked);  // limit 0 never locks

  EXPECT_EQ(logs.count("unreachable"), 1);
  EXPECT_EQ(logs.count("is back"), 0);
}

TEST(RateLimiterFallback, EmptyOrBadUrlCountsLocally) {
  for (const char* url : {"", "http://127.0.0.1:6379", "redis://127.0.0.1:notaport"}) {
    rate_limiter rl(url);
    const auto key = unique_key("empty");
    EXPECT_TRUE(rl.take(key, bucket{1, 1}).allowed) << url;
    EXPECT_FALSE(rl.take(key, bucket{1, 1}).allowed) << url;
    EXPECT_FALSE(rl.shared()) << url;
  }
}

TEST(RateLimiterFallback, BoundedLocalTable) {
  std::int64_t now = 0;
  rate_limiter::options opts;
  opts.now_ms = [&now] { return now; };
  opts.max_local_keys = 10;
  rate_limiter rl("", opts);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(rl.take("k" + std::to_string(i), bucket{1, 1}).allowed);
  // The table was swept (or reset) instead of growing: the limiter still answers sensibly.
  now += 1000;
  EXPECT_TRUE(rl.take("k99", bucket{1, 1}).allowed);
  EXPECT_FALSE(rl.take("k99", bucket{1, 1}).allowed);
}

}  // namespace
