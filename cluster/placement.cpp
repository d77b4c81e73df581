// Rendezvous hashing. The hash is written out here (little-endian loads, splitmix64 finaliser) rather than
// borrowed from the standard library, whose std::hash differs between implementations and versions.
#include "cluster/placement.hpp"

#include <algorithm>

namespace chorus::cluster {
namespace {

constexpr std::uint64_t seed = 0x63686f7275732d31;  // "chorus-1"; part of the placement: never change it
constexpr std::uint64_t golden = 0x9e3779b97f4a7c15;

// splitmix64's finaliser (Stafford's variant 13): a bijection with full avalanche.
constexpr std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9;
  x ^= x >> 27;
  x *= 0x94d049bb133111eb;
  x ^= x >> 31;
  return x;
}

// Bytes as a little-endian number, whatever the platform's byte order.
constexpr std::uint64_t load_le(std::string_view s, std::size_t pos, std::size_t n) {
  std::uint64_t k = 0;
  for (std::size_t i = 0; i < n; ++i) k |= std::uint64_t(static_cast<unsigned char>(s[pos + i])) << (8 * i);
  return k;
}

// A 64-bit hash of `s` under `h`: 8 bytes at a time through the finaliser, then the tail and the length.
constexpr std::uint64_t hash_bytes(std::string_view s, std::uint64_t h) {
  h ^= std::uint64_t(s.size()) * golden;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) h = mix(h ^ load_le(s, i, 8)) + golden;
  if (i < s.size()) h = mix(h ^ load_le(s, i, s.size() - i) ^ (std::uint64_t(s.size() - i) << 59));
  return mix(h ^ golden);
}

// Higher weight first; equal weights by the smaller id, so the order of the input never matters.
bool better(std::uint64_t wa, std::string_view a, std::uint64_t wb, std::string_view b) {
  return wa != wb ? wa > wb : a < b;
}

}  // namespace

std::uint64_t placement_weight(std::string_view room, std::string_view node) {
  // The room's hash seeds the node's, so each room sees an independent ranking of the nodes.
  return hash_bytes(node, hash_bytes(room, seed));
}

std::string_view owner_of(std::string_view room, std::span<const node_id> live_nodes) {
  std::string_view best;
  std::uint64_t best_weight = 0;
  bool any = false;
  for (const auto& node : live_nodes) {
    const std::uint64_t w = placement_weight(room, node);
    if (!any || better(w, node, best_weight, best)) {
      best = node;
      best_weight = w;
      any = true;
    }
  }
  return best;
}

std::vector<std::string_view> rank_owners(std::string_view room, std::span<const node_id> nodes,
                                          std::size_t k) {
  struct ranked {
    std::uint64_t weight;
    std::string_view node;
  };
  std::vector<ranked> all;
  all.reserve(nodes.size());
  for (const auto& node : nodes) all.push_back({placement_weight(room, node), node});
  std::sort(all.begin(), all.end(),
            [](const ranked& a, const ranked& b) { return better(a.weight, a.node, b.weight, b.node); });
  std::vector<std::string_view> out;
  for (const auto& r : all) {
    if (out.size() >= k) break;
    if (out.empty() || out.back() != r.node) out.push_back(r.node);  // duplicates sort next to each other
  }
  return out;
}

}  // namespace chorus::cluster
