// Tests for the token-bucket rate limiter: burst, refill rate, advertised waits, cap and clock anomalies.
#include "actors/token_bucket.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace {

using chorus::actors::token_bucket;

TEST(TokenBucket, BurstThenLimited) {
  token_bucket bucket(10, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(bucket.take(1000), 0u) << i;
  EXPECT_EQ(bucket.take(1000), 100u);
  EXPECT_EQ(bucket.take(1000), 100u);  // a refused take spends nothing
}

TEST(TokenBucket, FirstTakeStartsFullAtAnyClockValue) {
  // The clock's origin is arbitrary: no refill is credited for the time before the first take.
  token_bucket late(1, 2);
  EXPECT_EQ(late.take(1'000'000'000'000), 0u);
  EXPECT_EQ(late.take(1'000'000'000'000), 0u);
  EXPECT_EQ(late.take(1'000'000'000'000), 1000u);

  token_bucket negative(1, 1);
  EXPECT_EQ(negative.take(-5000), 0u);
  EXPECT_EQ(negative.take(-5000), 1000u);
  EXPECT_EQ(negative.take(-4000), 0u);
}

TEST(TokenBucket, RefillsAtRate) {
  token_bucket bucket(10, 2);
  EXPECT_EQ(bucket.take(0), 0u);
  EXPECT_EQ(bucket.take(0), 0u);
  EXPECT_EQ(bucket.take(50), 50u);
  EXPECT_EQ(bucket.take(99), 1u);
  EXPECT_EQ(bucket.take(100), 0u);
  EXPECT_EQ(bucket.take(100), 100u);
  // Two tokens' worth of time refills two.
  EXPECT_EQ(bucket.take(300), 0u);
  EXPECT_EQ(bucket.take(300), 0u);
  EXPECT_EQ(bucket.take(300), 100u);
}

TEST(TokenBucket, AdvertisedWaitIsExact) {
  for (std::uint32_t rate : {1u, 3u, 7u, 10u, 30u, 60u, 333u, 1000u}) {
    token_bucket bucket(rate, 1);
    std::int64_t t = 12345;
    ASSERT_EQ(bucket.take(t), 0u);
    for (int round = 0; round < 50; ++round) {
      const std::uint32_t wait = bucket.take(t);
      ASSERT_GE(wait, 1u);
      // The wait is rounded up, never down: one millisecond early is refused, on time is allowed.
      if (wait > 1) {
        ASSERT_GT(bucket.take(t + wait - 1), 0u) << "rate " << rate << " round " << round;
      }
      ASSERT_EQ(bucket.take(t + wait), 0u) << "rate " << rate << " round " << round;
      t += wait;
    }
  }
}

TEST(TokenBucket, WaitRoundsUp) {
  token_bucket bucket(3, 1);  // one token every 333.3 ms
  EXPECT_EQ(bucket.take(0), 0u);
  EXPECT_EQ(bucket.take(0), 334u);
  EXPECT_EQ(bucket.take(333), 1u);
  EXPECT_EQ(bucket.take(334), 0u);
}

TEST(TokenBucket, WaitIsAtLeastOneMillisecond) {
  token_bucket bucket(5000, 1);  // five tokens per millisecond
  EXPECT_EQ(bucket.take(0), 0u);
  EXPECT_EQ(bucket.take(0), 1u);
  EXPECT_EQ(bucket.take(1), 0u);
}

TEST(TokenBucket, NoRefillBeyondBurst) {
  token_bucket bucket(10, 3);
  EXPECT_EQ(bucket.take(0), 0u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(bucket.take(3'600'000), 0u) << i;
  EXPECT_EQ(bucket.take(3'600'000), 100u);
}

TEST(TokenBucket, LongRunAverageMatchesRate) {
  token_bucket bucket(20, 5);
  int allowed = 0;
  for (std::int64_t t = 0; t <= 10'000; ++t) {
    while (bucket.take(t) == 0) ++allowed;
  }
  EXPECT_EQ(allowed, 5 + 20 * 10);
}

TEST(TokenBucket, TimeGoingBackwardsCreditsNothing) {
  token_bucket bucket(10, 1);
  EXPECT_EQ(bucket.take(1000), 0u);
  EXPECT_EQ(bucket.take(500), 100u);
  EXPECT_EQ(bucket.take(0), 100u);
  // Refill resumes from the new reading instead of stalling until the clock regains 1000.
  EXPECT_EQ(bucket.take(50), 50u);
  EXPECT_EQ(bucket.take(100), 0u);
  EXPECT_EQ(bucket.take(100), 100u);
}

TEST(TokenBucket, ExtremeClockValuesDoNotOverflow) {
  token_bucket bucket(1, 1);
  EXPECT_EQ(bucket.take(std::numeric_limits<std::int64_t>::min()), 0u);
  EXPECT_EQ(bucket.take(std::numeric_limits<std::int64_t>::max()), 0u);
  EXPECT_EQ(bucket.take(std::numeric_limits<std::int64_t>::max()), 1000u);
  EXPECT_EQ(bucket.take(std::numeric_limits<std::int64_t>::min()), 1000u);
}

TEST(TokenBucket, ZeroRateNeverRefills) {
  token_bucket bucket(0, 2);
  EXPECT_EQ(bucket.take(0), 0u);
  EXPECT_EQ(bucket.take(0), 0u);
  EXPECT_EQ(bucket.take(1'000'000), std::numeric_limits<std::uint32_t>::max());
}

TEST(TokenBucket, ZeroBurstStillAllowsOneAtATime) {
  token_bucket bucket(10, 0);
  EXPECT_EQ(bucket.take(0), 0u);
  EXPECT_EQ(bucket.take(0), 100u);
  EXPECT_EQ(bucket.take(100), 0u);
}

}  // namespace
