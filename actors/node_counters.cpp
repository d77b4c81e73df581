// The node's counters as Prometheus text, for GET /metrics.
#include "actors/node_counters.hpp"

#include <algorithm>
#include <cstdio>
#include <string_view>

namespace chorus::actors {

namespace {

/// Appends every part. (Parts are the call's arguments, so temporaries among them live until it returns.)
template <class... Parts>
void append(std::string& out, const Parts&... parts) {
  (out.append(std::string_view(parts)), ...);
}

/// A metric's HELP and TYPE lines, which go before its samples.
void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  append(out, "# HELP chorus_", name, " ", help, "\n# TYPE chorus_", name, " ", type, "\n");
}

void metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::string_view value) {
  header(out, name, type, help);
  append(out, "chorus_", name, " ", value, "\n");
}

/// A number as Prometheus reads it: no exponent, no trailing zeros ("0.0075", "10").
std::string number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", value);
  std::string out = buf;
  out.erase(out.find_last_not_of('0') + 1);
  if (out.back() == '.') out.pop_back();
  return out;
}

void histogram(std::string& out, std::string_view name, std::string_view help, const latency_histogram& h) {
  header(out, name, "histogram", help);
  const auto counts = h.counts();
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    const auto le = i < latency_histogram::bounds_ms.size() ? number(latency_histogram::bounds_ms[i] / 1000)
                                                            : std::string("+Inf");
    append(out, "chorus_", name, "_bucket{le=\"", le, "\"} ", std::to_string(cumulative), "\n");
  }
  append(out, "chorus_", name, "_sum ", number(h.sum_seconds()), "\nchorus_", name, "_count ",
         std::to_string(cumulative), "\n");
}

}  // namespace

void latency_histogram::observe(std::chrono::steady_clock::duration d) {
  const double ms = std::chrono::duration<double, std::milli>(d).count();
  std::size_t i = 0;
  while (i < bounds_ms.size() && ms > bounds_ms[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  sum_us_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(us, 0)), std::memory_order_relaxed);
}

std::array<std::uint64_t, latency_histogram::bounds_ms.size() + 1> latency_histogram::counts() const {
  std::array<std::uint64_t, bounds_ms.size() + 1> out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

double latency_histogram::sum_seconds() const {
  return static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6;
}

std::string metrics_text(const node_counters& c) {
  constexpr auto relaxed = std::memory_order_relaxed;
  auto count = [](const std::atomic<std::uint64_t>& n) { return std::to_string(n.load(relaxed)); };
  // Seconds, as Prometheus names durations; its rate is the writers' busy fraction.
  const auto busy = number(static_cast<double>(c.write_busy_us.load(relaxed)) / 1e6);
  std::string out;
  metric(out, "rooms", "gauge", "Room actors active on this node.", count(c.rooms));
  metric(out, "connections", "gauge", "WebSocket sessions open on this node.", count(c.connections));
  metric(out, "messages_stored_total", "counter", "Messages committed by this node's rooms.",
         count(c.messages_stored));
  metric(out, "sends_shed_total", "counter",
         "Sends refused as `unavailable` because the room's writes to PostgreSQL were behind.",
         count(c.sends_shed));
  metric(out, "write_batches_total", "counter", "Batches of rows PostgreSQL answered for the writers.",
         count(c.write_batches));
  metric(out, "write_rows_total", "counter", "Rows in the batches answered, whatever became of each.",
         count(c.write_rows));
  metric(out, "write_busy_seconds_total", "counter", "Time the writers spent writing batches.", busy);
  metric(out, "write_failures_total", "counter",
         "Batches that failed: database unavailable or commit in doubt.", count(c.write_failures));
  histogram(out, "send_ack_seconds",
            "From a room giving a send its seq to acknowledging it after the commit.", c.send_ack);
  return out;
}

}  // namespace chorus::actors
