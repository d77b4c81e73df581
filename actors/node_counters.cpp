// The node's counters as Prometheus text, for GET /metrics.
#include "actors/node_counters.hpp"

#include <cstdio>
#include <initializer_list>
#include <string_view>

namespace chorus::actors {

namespace {

void metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::string_view value) {
  for (std::string_view part :
       std::initializer_list<std::string_view>{"# HELP chorus_", name, " ", help, "\n# TYPE chorus_", name,
                                               " ", type, "\nchorus_", name, " ", value, "\n"})
    out += part;
}

}  // namespace

std::string metrics_text(const node_counters& c) {
  constexpr auto relaxed = std::memory_order_relaxed;
  auto count = [](const std::atomic<std::uint64_t>& n) { return std::to_string(n.load(relaxed)); };
  // Seconds, as Prometheus names durations; its rate is the writers' busy fraction.
  char busy[32];
  std::snprintf(busy, sizeof busy, "%.6f", static_cast<double>(c.write_busy_us.load(relaxed)) / 1e6);
  std::string out;
  metric(out, "rooms", "gauge", "Room actors active on this node.", count(c.rooms));
  metric(out, "connections", "gauge", "WebSocket sessions open on this node.", count(c.connections));
  metric(out, "messages_stored_total", "counter", "Messages committed by this node's rooms.",
         count(c.messages_stored));
  metric(out, "write_batches_total", "counter", "Batches of rows PostgreSQL answered for the writers.",
         count(c.write_batches));
  metric(out, "write_rows_total", "counter", "Rows in the batches answered, whatever became of each.",
         count(c.write_rows));
  metric(out, "write_busy_seconds_total", "counter", "Time the writers spent writing batches.", busy);
  metric(out, "write_failures_total", "counter",
         "Batches that failed: database unavailable or commit in doubt.", count(c.write_failures));
  return out;
}

}  // namespace chorus::actors
