// What a node counts about itself for operators (chorusctl stats, GET /metrics): rooms, connections, writes.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace chorus::actors {

/// A latency distribution in fixed buckets, for Prometheus: observing is two relaxed atomic additions, so
/// any number of actors may share one.
class latency_histogram {
 public:
  /// Upper bounds of the buckets, in milliseconds; a last bucket takes everything above.
  static constexpr std::array<double, 22> bounds_ms{1,  2,  3,   5,   7.5, 10,  15,  20,   25,   30,   40,
                                                    50, 75, 100, 150, 200, 300, 500, 1000, 2500, 5000, 10000};

  void observe(std::chrono::steady_clock::duration d);

  /// Observations per bucket (not cumulative; the last is above every bound) and their sum.
  std::array<std::uint64_t, bounds_ms.size() + 1> counts() const;
  double sum_seconds() const;

 private:
  std::array<std::atomic<std::uint64_t>, bounds_ms.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_us_{0};
};

/// One per node, shared by the actors that update it, the membership actor that publishes it and the
/// /metrics endpoint. Relaxed atomics: each number is a gauge or a running total read now and then, never
/// used to synchronise.
struct node_counters {
  std::atomic<std::uint64_t> rooms{0};            ///< room actors active on this node
  std::atomic<std::uint64_t> connections{0};      ///< WebSocket sessions open on this node
  std::atomic<std::uint64_t> messages_stored{0};  ///< messages committed by this node's rooms, since start
  /// Sends refused because the room's writes were behind (room_services::shed_after): what the node
  /// turned away rather than queue past what the database keeps up with.
  std::atomic<std::uint64_t> sends_shed{0};

  // The batch writers, all of the node's together. A writer commits what gathered during its previous
  // commit, so under load it is always busy; the time a batch takes (busy time over batches) is what sets
  // a send's wait for its ack, and what grows as the write path nears its limit.
  std::atomic<std::uint64_t> write_batches{0};   ///< batches that reached PostgreSQL and got an answer
  std::atomic<std::uint64_t> write_rows{0};      ///< rows in those batches, whatever became of each
  std::atomic<std::uint64_t> write_busy_us{0};   ///< time spent writing batches, answered or failed
  std::atomic<std::uint64_t> write_failures{0};  ///< failed: database unavailable, commit in doubt

  /// From a room giving a send its seq to acknowledging it after the commit: the write path's share of a
  /// send's wait, without the client's network and the node's queues in front of the room.
  latency_histogram send_ack;
};

/// The counters in Prometheus' text exposition format (version 0.0.4), one `chorus_…` metric each.
std::string metrics_text(const node_counters& counters);

}  // namespace chorus::actors
