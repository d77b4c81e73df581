// The results of a chorus-bench run and their two renderings: a human summary and one JSON line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/load/histogram.hpp"
#include "bench/load/scenario.hpp"

namespace chorus::bench {

/// Percentiles in milliseconds.
struct latency_summary {
  std::uint64_t count = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
};
/// Summarises a histogram of nanoseconds.
latency_summary summarize(const histogram& h);

/// One measured window at one offered rate (a plain run has one, a ramp one per step).
struct step_result {
  double offered_rate = 0;  ///< messages per second
  double duration_s = 0;
  std::uint64_t sent = 0;          ///< messages scheduled in the window and handed to a connection
  std::uint64_t acknowledged = 0;  ///< of those, send replies with ok
  std::uint64_t delivered = 0;     ///< message events received for them (each member counts)
  std::uint64_t expected = 0;      ///< sent x members of the room (members whose join succeeded)
  double delivery_ratio = 0;
  double deliveries_per_s = 0;  ///< message events received during the window, any stamp
  latency_summary ack_latency;  ///< from each send's scheduled time: the generator's own delays count
  /// From the moment the send was written to the socket: what the server and the network took, without the
  /// generator's lateness or the wait for a --write-tick-ms tick.
  latency_summary ack_latency_from_write;
  std::vector<latency_summary> ack_latency_by_second;  ///< of the sends of each second of the window
  latency_summary delivery_latency;
  /// With several --url: delivery latency to members connected through the sender's URL, and through another
  /// one (on a cluster: same node as the sender, another node); deliveries by the receiver's URL.
  latency_summary delivery_latency_same_url;
  latency_summary delivery_latency_other_url;
  std::vector<std::uint64_t> delivered_by_url;
  std::map<std::string, std::uint64_t> errors;  ///< error code -> count, during the window and its drain
  std::uint64_t disconnects = 0;
  std::uint64_t seq_gaps = 0;  ///< messages skipped within a room's sequence, per receiver
  std::uint64_t seq_out_of_order = 0;
  std::uint64_t max_send_queue = 0;  ///< largest client-side write backlog of a sender (generator lag)
  double generator_cpu = 0;          ///< the generator's CPU time / wall time (1.0 = one core)
  double max_pacer_lag_ms = 0;       ///< the generator's worst stall (its timer fired this late)
  double server_cpu = -1;            ///< the same for --server-pid, summed over all given; -1 when unknown
  std::vector<double> server_cpus;   ///< per --server-pid, in order, when more than one was given
  bool held = true;                  ///< met the ramp's bounds
};

struct connect_result {
  std::uint32_t requested = 0;
  std::uint32_t open = 0;
  std::uint32_t failed = 0;
  std::uint32_t joined = 0;  ///< connections whose joins all succeeded
  double connect_time_s = 0;
  double connect_rate = 0;  ///< open connections per second of connect time
  latency_summary latency;  ///< TCP connect + upgrade, per connection
  double join_time_s = 0;
};

struct churn_result {
  double offered_rate = 0;
  std::uint64_t attempted = 0;
  std::uint64_t completed = 0;  ///< connected, upgraded, joined, closed
  std::uint64_t failed = 0;
  double completed_per_s = 0;
  latency_summary latency;  ///< start of connect to the join reply
};

struct memory_result {
  bool available = false;
  std::uint64_t rss_before_kib = 0;
  std::uint64_t rss_after_kib = 0;
  double rss_per_connection_kib = 0;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> samples;  ///< (open connections, server RSS KiB)
};

struct run_report {
  scenario settings;
  std::uint64_t open_files_limit = 0;
  connect_result connect;
  std::vector<step_result> steps;
  std::optional<std::size_t> highest_held;  ///< ramp: index of the highest step that held
  std::optional<churn_result> churn;
  memory_result memory;
  std::map<std::string, std::uint64_t> setup_errors;   ///< errors while connecting and joining
  std::map<std::uint16_t, std::uint64_t> close_codes;  ///< connections the server ended, by close code
  std::uint64_t disconnects = 0;                       ///< open connections that ended before the run did
  double generator_cpu = 0;                            ///< over the whole run
  std::string aborted;                                 ///< why the run stopped early, if it did
};

/// The headline step: the highest that held for a ramp, otherwise the only (last) one.
const step_result* headline(const run_report& r);

void print_summary(std::FILE* out, const run_report& r);
std::string json_line(const run_report& r);

}  // namespace chorus::bench
