// Where a room lives: rendezvous (highest-random-weight) hashing of room ids over the live nodes. Pure
// functions, no CAF, no I/O, so every node computes the same answer from the same list of live nodes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::cluster {

/// A node's name, as configured (`node_id`) and as registered in Redis. Unique in a cluster.
using node_id = std::string;

/// The weight of `node` for `room`: a fixed-seed 64-bit hash of both, the same on every build and
/// platform (never std::hash). The node with the highest weight owns the room. Changing this function
/// moves rooms between nodes of a running cluster: placement_test pins known owners for that reason.
std::uint64_t placement_weight(std::string_view room, std::string_view node);

/// The owner of `room` among `live_nodes`: the node of highest weight (ties, which practically never
/// happen, go to the smaller id). The order of `live_nodes` does not matter; duplicates are harmless.
/// Empty when `live_nodes` is empty. The view points into `live_nodes`.
///
/// When a node joins, only rooms whose new owner is that node move (about 1/(n+1) of them); when a node
/// leaves, only its own rooms move, each to its second-ranked node.
std::string_view owner_of(std::string_view room, std::span<const node_id> live_nodes);

/// The `k` best owners of `room`, best first, without duplicates (fewer when there are fewer nodes):
/// element 0 is owner_of(); element 1 takes over if the owner leaves, and so on. Views point into `nodes`.
std::vector<std::string_view> rank_owners(std::string_view room, std::span<const node_id> nodes,
                                          std::size_t k);

}  // namespace chorus::cluster
