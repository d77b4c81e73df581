// A log-linear latency histogram in the spirit of HdrHistogram: a fixed array, no allocation per sample.
#pragma once

#include <array>
#include <cstdint>

namespace chorus::bench {

/// Counts non-negative values (nanoseconds here) in buckets that are exact below 2^kSubBits and have
/// 2^(kSubBits-1) linear sub-buckets per power of two above, so every recorded value is reported within
/// 1/128 (0.8 %) of itself. The whole table is inline (about 60 KiB): recording is a few instructions and
/// never allocates, which matters because the generator records hundreds of thousands of samples a second.
class histogram {
 public:
  static constexpr int kSubBits = 8;
  static constexpr std::size_t kBuckets =
      (std::size_t{1} << kSubBits) + (64 - kSubBits) * (std::size_t{1} << (kSubBits - 1));

  void record(std::uint64_t value) {
    ++counts_[bucket_of(value)];
    ++total_;
    if (value > max_) max_ = value;
    if (value < min_) min_ = value;
  }

  void reset();
  void merge(const histogram& other);

  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return total_ == 0 ? 0 : max_; }
  std::uint64_t min() const { return total_ == 0 ? 0 : min_; }

  /// The smallest bucket value at or below which `fraction` (0..1) of the samples lie; the exact maximum for
  /// fraction 1, 0 when empty. A bucket is reported by its upper bound, so a percentile never flatters.
  std::uint64_t percentile(double fraction) const;

  static std::size_t bucket_of(std::uint64_t value) {
    if (value < (std::uint64_t{1} << kSubBits)) return static_cast<std::size_t>(value);
    const int msb = 63 - __builtin_clzll(value);
    const int shift = msb - (kSubBits - 1);
    const std::uint64_t sub = (value >> shift) - (std::uint64_t{1} << (kSubBits - 1));
    return (std::size_t{1} << kSubBits) +
           static_cast<std::size_t>(msb - kSubBits) * (std::size_t{1} << (kSubBits - 1)) +
           static_cast<std::size_t>(sub);
  }

  /// The largest value that falls into `bucket`.
  static std::uint64_t upper_bound_of(std::size_t bucket);

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = UINT64_MAX;
};

}  // namespace chorus::bench
