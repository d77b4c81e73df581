// Percentiles, merging and bucket bounds for the log-linear latency histogram.
#include "bench/load/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace chorus::bench {

void histogram::reset() {
  counts_.fill(0);
  total_ = 0;
  max_ = 0;
  min_ = UINT64_MAX;
}

void histogram::merge(const histogram& other) {
  for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
}

std::uint64_t histogram::upper_bound_of(std::size_t bucket) {
  constexpr std::size_t exact = std::size_t{1} << kSubBits;
  constexpr std::size_t half = std::size_t{1} << (kSubBits - 1);
  if (bucket < exact) return bucket;
  const std::size_t octave = (bucket - exact) / half;  // 0 for values with msb == kSubBits
  const std::size_t sub = (bucket - exact) % half;
  const int shift = static_cast<int>(octave) + 1;
  const std::uint64_t lower = (std::uint64_t{half} + sub) << shift;
  return lower + ((std::uint64_t{1} << shift) - 1);
}

std::uint64_t histogram::percentile(double fraction) const {
  if (total_ == 0) return 0;
  if (fraction >= 1.0) return max_;
  const auto rank = static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(total_)));
  const std::uint64_t wanted = std::max<std::uint64_t>(rank, 1);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= wanted) return std::min(upper_bound_of(i), max_);
  }
  return max_;
}

}  // namespace chorus::bench
