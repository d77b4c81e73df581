// Tests for the node's counters as Prometheus text: every metric with its help, type and current value, and
// the ack-time histogram's buckets.
#include "actors/node_counters.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>

namespace {

using chorus::actors::metrics_text;
using chorus::actors::node_counters;

/// The lines of `text` that are samples (not # comments).
std::vector<std::string> samples(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') out.push_back(line);
  return out;
}

TEST(NodeCounters, every_counter_is_a_sample_with_its_value) {
  node_counters c;
  c.rooms = 3;
  c.connections = 7;
  c.messages_stored = 1200;
  c.sends_shed = 9;
  c.write_batches = 4;
  c.write_rows = 1200;
  c.write_busy_us = 2'500'000;
  c.write_failures = 1;
  auto lines = samples(metrics_text(c));
  ASSERT_GE(lines.size(), 8u);
  lines.resize(8);  // the histogram's lines follow; see below
  EXPECT_EQ(lines, (std::vector<std::string>{
                       "chorus_rooms 3",
                       "chorus_connections 7",
                       "chorus_messages_stored_total 1200",
                       "chorus_sends_shed_total 9",
                       "chorus_write_batches_total 4",
                       "chorus_write_rows_total 1200",
                       "chorus_write_busy_seconds_total 2.5",
                       "chorus_write_failures_total 1",
                   }));
}

TEST(NodeCounters, each_metric_has_help_and_a_type_before_its_sample) {
  const auto text = metrics_text(node_counters{});
  EXPECT_NE(text.find("# HELP chorus_rooms Room actors active on this node.\n# TYPE chorus_rooms gauge\n"
                      "chorus_rooms 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE chorus_write_busy_seconds_total counter\nchorus_write_busy_seconds_total 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE chorus_send_ack_seconds histogram\n"), std::string::npos);
  // Prometheus wants every line ended, the last one too.
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
}

TEST(NodeCounters, ack_times_are_a_cumulative_histogram_in_seconds) {
  using std::chrono::microseconds;
  using std::chrono::milliseconds;
  node_counters c;
  c.send_ack.observe(microseconds(400));         // ≤ 1 ms
  c.send_ack.observe(milliseconds(1));           // on a bound: that bucket
  c.send_ack.observe(microseconds(7600));        // ≤ 10 ms, above 7.5
  c.send_ack.observe(milliseconds(60));          // ≤ 75 ms
  c.send_ack.observe(std::chrono::seconds(30));  // above every bound
  const auto lines = samples(metrics_text(c));
  auto value = [&](const std::string& prefix) -> std::string {
    for (const auto& l : lines)
      if (l.rfind(prefix + " ", 0) == 0) return l.substr(prefix.size() + 1);
    return "missing";
  };
  EXPECT_EQ(value("chorus_send_ack_seconds_bucket{le=\"0.001\"}"), "2");
  EXPECT_EQ(value("chorus_send_ack_seconds_bucket{le=\"0.0075\"}"), "2");
  EXPECT_EQ(value("chorus_send_ack_seconds_bucket{le=\"0.01\"}"), "3");
  EXPECT_EQ(value("chorus_send_ack_seconds_bucket{le=\"0.05\"}"), "3");
  EXPECT_EQ(value("chorus_send_ack_seconds_bucket{le=\"0.075\"}"), "4");
  EXPECT_EQ(value("chorus_send_ack_seconds_bucket{le=\"10\"}"), "4");
  EXPECT_EQ(value("chorus_send_ack_seconds_bucket{le=\"+Inf\"}"), "5");
  EXPECT_EQ(value("chorus_send_ack_seconds_count"), "5");
  EXPECT_EQ(value("chorus_send_ack_seconds_sum"), "30.069");
  // One line per bound plus +Inf, each count at least the one before.
  std::size_t buckets = 0;
  long previous = -1;
  for (const auto& l : lines)
    if (l.rfind("chorus_send_ack_seconds_bucket", 0) == 0) {
      ++buckets;
      const long n = std::stol(l.substr(l.rfind(' ') + 1));
      EXPECT_GE(n, previous) << l;
      previous = n;
    }
  EXPECT_EQ(buckets, chorus::actors::latency_histogram::bounds_ms.size() + 1);
}

}  // namespace
