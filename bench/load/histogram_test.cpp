// Tests for the log-linear histogram: bucket bounds, precision and percentiles.
#include "bench/load/histogram.hpp"

#include <gtest/gtest.h>

#include <memory>  // a histogram is 60 KiB: too big for a test's stack frame under ASan

namespace chorus::bench {
namespace {

TEST(Histogram, SmallValuesAreExact) {
  for (std::uint64_t v = 0; v < 256; ++v) EXPECT_EQ(histogram::upper_bound_of(histogram::bucket_of(v)), v);
}

TEST(Histogram, EveryValueLiesInItsBucketWithinOnePercent) {
  for (std::uint64_t v :
       {256ULL, 257ULL, 1000ULL, 123456ULL, 987654321ULL, 1ULL << 40, (1ULL << 63) + 12345}) {
    const auto b = histogram::bucket_of(v);
    ASSERT_LT(b, histogram::kBuckets);
    const auto upper = histogram::upper_bound_of(b);
    EXPECT_GE(upper, v);
    EXPECT_LE(static_cast<double>(upper - v), static_cast<double>(v) / 128.0) << v;
    if (b > 0) {
      EXPECT_LT(histogram::upper_bound_of(b - 1), v) << v;
    }
  }
  EXPECT_EQ(histogram::bucket_of(UINT64_MAX), histogram::kBuckets - 1);
}

TEST(Histogram, Percentiles) {
  auto h = std::make_unique<histogram>();
  EXPECT_EQ(h->percentile(0.5), 0u);
  for (std::uint64_t v = 1; v <= 1000; ++v) h->record(v * 1000);  // 1 us .. 1 ms in ns
  EXPECT_EQ(h->count(), 1000u);
  EXPECT_NEAR(static_cast<double>(h->percentile(0.5)), 500'000.0, 500'000.0 / 128);
  EXPECT_NEAR(static_cast<double>(h->percentile(0.99)), 990'000.0, 990'000.0 / 128);
  EXPECT_EQ(h->percentile(1.0), 1'000'000u);
  EXPECT_EQ(h->max(), 1'000'000u);
  EXPECT_LE(h->percentile(0.999), h->max());
}

TEST(Histogram, MergeAndReset) {
  auto a = std::make_unique<histogram>();
  auto b = std::make_unique<histogram>();
  a->record(10);
  b->record(5000);
  a->merge(*b);
  EXPECT_EQ(a->count(), 2u);
  EXPECT_EQ(a->max(), 5000u);
  EXPECT_EQ(a->min(), 10u);
  a->reset();
  EXPECT_EQ(a->count(), 0u);
  EXPECT_EQ(a->max(), 0u);
}

}  // namespace
}  // namespace chorus::bench
