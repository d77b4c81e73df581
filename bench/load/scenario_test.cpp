// Tests for chorus-bench's command line: presets, overrides, and the options a cluster run needs.
#include "bench/load/scenario.hpp"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace chorus::bench {
namespace {

parse_result parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"chorus-bench", "--secret", "s"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

TEST(Scenario, PresetThenFlagsWhateverTheOrder) {
  const auto r = parse({"--rate", "250", "--scenario", "fanout"});
  ASSERT_TRUE(std::holds_alternative<scenario>(r));
  const auto& s = std::get<scenario>(r);
  EXPECT_EQ(s.name, "fanout");
  EXPECT_EQ(s.connections, 1000u);
  EXPECT_EQ(s.rate, 250);
}

TEST(Scenario, SeveralUrlsKeepTheirOrder) {
  const auto r = parse({"--url", "ws://127.0.0.1:1001/ws", "--url", "ws://127.0.0.1:1002/ws", "--url",
                        "ws://127.0.0.1:1003/ws"});
  ASSERT_TRUE(std::holds_alternative<scenario>(r));
  const auto& urls = std::get<scenario>(r).urls;
  ASSERT_EQ(urls.size(), 3u);
  EXPECT_EQ(urls[0].port, "1001");
  EXPECT_EQ(urls[2].port, "1003");
  EXPECT_EQ(urls[1].path, "/ws");
}

TEST(Scenario, UrlsByConnectionOrByRoom) {
  const auto r = parse({"--url", "ws://a:1/ws", "--url", "ws://b:2/ws", "--url", "ws://c:3/ws",
                        "--connections", "60", "--rooms", "6", "--members-per-room", "10", "--senders", "6"});
  ASSERT_TRUE(std::holds_alternative<scenario>(r));
  auto s = std::get<scenario>(r);
  EXPECT_EQ(s.url_of(0), 0u);
  EXPECT_EQ(s.url_of(4), 1u);
  EXPECT_EQ(s.url_of(59), 2u);
  s.url_by_room = true;  // members 0..9 are room 0, 10..19 room 1, ...: a room's members share a URL
  EXPECT_EQ(s.url_of(0), 0u);
  EXPECT_EQ(s.url_of(9), 0u);
  EXPECT_EQ(s.url_of(10), 1u);
  EXPECT_EQ(s.url_of(35), 0u);
  EXPECT_EQ(s.url_of(59), 2u);
  EXPECT_TRUE(std::get<scenario>(parse({"--url-by", "room", "--connections", "1000"})).url_by_room);
  // By room only when every connection is in exactly one room.
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--url-by", "room", "--connections", "900"})));
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--url-by", "node"})));
}

TEST(Scenario, OneServerPidPerNode) {
  const auto r = parse({"--server-pid", "11", "--server-pid", "12", "--server-pid", "13"});
  ASSERT_TRUE(std::holds_alternative<scenario>(r));
  const auto& s = std::get<scenario>(r);
  EXPECT_EQ(s.server_pids, (std::vector<int>{11, 12, 13}));
  EXPECT_EQ(s.memory_pid(), 11);
  EXPECT_EQ(std::get<scenario>(parse({})).memory_pid(), 0);
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--server-pid", "0"})));
}

TEST(Scenario, RoomPrefixIsRandomUnlessGiven) {
  EXPECT_EQ(std::get<scenario>(parse({"--room-prefix", "c1-7."})).room_prefix, "c1-7.");
  const auto a = std::get<scenario>(parse({})).room_prefix;
  EXPECT_FALSE(a.empty());
  // A prefix goes into JSON unescaped and is matched byte for byte: nothing that would need escaping.
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--room-prefix", "a\"b"})));
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--room-prefix", ""})));
}

TEST(Scenario, WriteTickIsOffUnlessGivenAndAtMostASecond) {
  EXPECT_EQ(std::get<scenario>(parse({"--scenario", "durable"})).write_tick_ms, 0u);
  EXPECT_EQ(std::get<scenario>(parse({"--write-tick-ms", "5"})).write_tick_ms, 5u);
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--write-tick-ms", "1001"})));
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--write-tick-ms", "0"})));
  EXPECT_TRUE(std::holds_alternative<parse_error>(parse({"--write-tick-ms", "2.5"})));
}

}  // namespace
}  // namespace chorus::bench
