// Tests for the fast line scanner against the line layouts Chorus and the Node reference produce.
#include "bench/load/frame_scan.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace chorus::bench {
namespace {

constexpr std::string_view kPrefix = "babc12-";

TEST(FrameScan, MessageEvent) {
  const auto sc =
      scan_line(R"({"ev":"message","room":"babc12-7","seq":42,"d":{"id":"0190d5c2","user":"u1",)"
                R"("text":"~T123456789;xxxx","ts":"2026-11-22T03:04:05.123Z","client_msg_id":"123456789"}})",
                kPrefix);
  EXPECT_EQ(sc.kind, line_kind::message);
  EXPECT_EQ(sc.room_index, 7u);
  EXPECT_EQ(sc.seq, 42u);
  EXPECT_TRUE(sc.stamped);
  EXPECT_EQ(sc.stamp_ns, 123456789u);
}

TEST(FrameScan, MessageNamesItsGeneratedSender) {
  const auto sc = scan_line(R"({"ev":"message","room":"babc12-7","seq":42,"d":{"id":"x","user":"u1234",)"
                            R"("text":"~T5;xx","ts":"t","client_msg_id":"5"}})",
                            kPrefix);
  EXPECT_EQ(sc.kind, line_kind::message);
  EXPECT_EQ(sc.sender, 1234u);
  EXPECT_TRUE(sc.stamped);
}

TEST(FrameScan, SenderIsUnknownUnlessGenerated) {
  // Another user, a name that only starts like a generated one, no user at all: still a measured message.
  for (const auto* line : {R"({"ev":"message","room":"babc12-1","seq":1,"d":{"user":"alice","text":"~T5;"}})",
                           R"({"ev":"message","room":"babc12-1","seq":1,"d":{"user":"u12x","text":"~T5;"}})",
                           R"({"ev":"message","room":"babc12-1","seq":1,"d":{"text":"~T5;"}})"}) {
    const auto sc = scan_line(line, kPrefix);
    EXPECT_EQ(sc.kind, line_kind::message) << line;
    EXPECT_EQ(sc.sender, UINT64_MAX) << line;
    EXPECT_TRUE(sc.stamped) << line;
  }
}

TEST(FrameScan, MessageFromSomeoneElseHasNoStamp) {
  const auto sc = scan_line(
      R"({"ev":"message","room":"babc12-0","seq":1,"d":{"id":"x","user":"u","text":"hi","ts":"t"}})",
      kPrefix);
  EXPECT_EQ(sc.kind, line_kind::message);
  EXPECT_FALSE(sc.stamped);
}

TEST(FrameScan, MessageInAForeignRoomIsStillAMessage) {
  const auto sc = scan_line(R"({"ev":"message","room":"general","seq":3,"d":{"text":"~T5;"}})", kPrefix);
  EXPECT_EQ(sc.kind, line_kind::message);
  EXPECT_EQ(sc.room_index, UINT64_MAX);
}

TEST(FrameScan, SendAckCarriesTheStampFromClientMsgId) {
  const auto sc = scan_line(R"({"re":1000007,"ok":true,"d":{"id":"x","room":"babc12-1","seq":9,"ts":"t",)"
                            R"("client_msg_id":"987654321"}})",
                            kPrefix);
  EXPECT_EQ(sc.kind, line_kind::send_ack);
  EXPECT_EQ(sc.re, 1000007);
  EXPECT_EQ(sc.stamp_ns, 987654321u);
}

TEST(FrameScan, OtherRepliesAndErrorsGoToTheSlowPath) {
  EXPECT_EQ(scan_line(R"({"re":1,"ok":true,"d":{"room":"r","last_seq":0,"members":[]}})", kPrefix).kind,
            line_kind::other_ok);
  EXPECT_EQ(scan_line(R"({"re":5,"ok":false,"error":{"code":"rate_limited","message":"m"}})", kPrefix).kind,
            line_kind::failure);
  EXPECT_EQ(scan_line(R"({"ev":"error","error":{"code":"malformed_json","message":"m"}})", kPrefix).kind,
            line_kind::failure);
  EXPECT_EQ(scan_line(R"({"ev":"presence","d":{"user":"u","status":"online"}})", kPrefix).kind,
            line_kind::ignorable);
  EXPECT_EQ(scan_line(R"({"d":{},"ev":"message"})", kPrefix).kind, line_kind::unknown);
  EXPECT_EQ(scan_line(R"({"ev":"message","seq":1})", kPrefix).kind, line_kind::unknown);
}

TEST(FrameScan, SplitsFramesOnNewlines) {
  std::vector<std::string> lines;
  for_each_line("a\nbb\n\nccc\n", [&](std::string_view l) { lines.emplace_back(l); });
  EXPECT_EQ(lines, (std::vector<std::string>{"a", "bb", "ccc"}));
}

TEST(FrameScan, ParseDigitsRejectsOverlongNumbers) {
  std::uint64_t v = 0;
  EXPECT_EQ(parse_digits("123x", v), 3u);
  EXPECT_EQ(v, 123u);
  EXPECT_EQ(parse_digits("x", v), 0u);
  EXPECT_EQ(parse_digits("12345678901234567890", v), 0u);
}

}  // namespace
}  // namespace chorus::bench
