// Tests for the node's counters as Prometheus text: every metric with its help, type and current value.
#include "actors/node_counters.hpp"

#include <gtest/gtest.h>

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
  c.write_batches = 4;
  c.write_rows = 1200;
  c.write_busy_us = 2'500'000;
  c.write_failures = 1;
  EXPECT_EQ(samples(metrics_text(c)), (std::vector<std::string>{
                                          "chorus_rooms 3",
                                          "chorus_connections 7",
                                          "chorus_messages_stored_total 1200",
                                          "chorus_write_batches_total 4",
                                          "chorus_write_rows_total 1200",
                                          "chorus_write_busy_seconds_total 2.500000",
                                          "chorus_write_failures_total 1",
                                      }));
}

TEST(NodeCounters, each_metric_has_help_and_a_type_before_its_sample) {
  const auto text = metrics_text(node_counters{});
  EXPECT_NE(text.find("# HELP chorus_rooms Room actors active on this node.\n# TYPE chorus_rooms gauge\n"
                      "chorus_rooms 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE chorus_write_busy_seconds_total counter\nchorus_write_busy_seconds_total "
                      "0.000000\n"),
            std::string::npos);
  // Prometheus wants every line ended, the last one too.
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
