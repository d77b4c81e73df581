// Randomised tests of the request decoder: valid frames broken byte by byte and field by field must each
// get a well-formed answer — a request that keeps every rule, or an error of the decoder's own codes that
// matches what is wrong — and never a crash, an exception or a sanitizer report.
#include "actors/protocol.hpp"
#include "tests/support/frame_mutator.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace chorus::protocol {
namespace {

using test::mutate_bytes;
using test::mutate_fields;
using test::pick;
using test::rng;

const decode_limits limits{};

// One valid frame of every operation, with every optional field somewhere.
const std::vector<std::string> corpus = {
    R"({"op":"auth","id":1,"token":"abc.def.ghi"})",
    R"({"op":"join","id":2,"room":"general"})",
    R"({"op":"join","id":3,"room":"dev-ops_2","last_seq":41})",
    R"({"op":"leave","id":4,"room":"general"})",
    R"({"op":"typing","id":5,"room":"r"})",
    R"({"op":"send","id":6,"room":"general","text":"hi there","client_msg_id":"c-123"})",
    R"({"op":"send","id":7,"room":"general","text":"caf\u00e9 \ud83d\ude00 \"q\""})",
    R"({"op":"ping","id":8})",
    R"({"op":"history","id":9,"room":"general","before":120,"limit":20})",
    R"({"op":"history","id":10,"room":"general","after":7})",
    R"({"op":"history","id":11,"room":"general","cursor":"o:120"})",
    R"({"op":"members","id":12,"room":"lobby","after":"bob","limit":1000})",
};

std::size_t code_points(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string_view op_name(const operation& op) {
  return std::visit(
      [](const auto& o) -> std::string_view {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, auth_op>) return "auth";
        if constexpr (std::is_same_v<T, join_op>) return "join";
        if constexpr (std::is_same_v<T, leave_op>) return "leave";
        if constexpr (std::is_same_v<T, send_op>) return "send";
        if constexpr (std::is_same_v<T, typing_op>) return "typing";
        if constexpr (std::is_same_v<T, ping_op>) return "ping";
        if constexpr (std::is_same_v<T, history_op>) return "history";
        return "members";
      },
      op);
}

/// The room a request names, if its operation has one.
const std::string* room_of(const operation& op) {
  return std::visit(
      [](const auto& o) -> const std::string* {
        if constexpr (requires { o.room; })
          return &o.room;
        else
          return nullptr;
      },
      op);
}

/// What was seen over a run, so that a test can show its frames reached every rule.
struct tally {
  std::map<error_code, int> errors;
  std::map<std::string, int> decoded;
};

/// Decodes `frame` and checks the answer against an independent reading of the same bytes.
void check(const std::string& frame, tally& seen) {
  SCOPED_TRACE(frame.size() > 300 ? frame.substr(0, 300) + "..." : frame);
  std::variant<request, decode_error> result;
  try {
    result = decode_request(frame, limits);
  } catch (const std::exception& e) {
    FAIL() << "decode_request threw: " << e.what();
  }

  boost::system::error_code ec;
  const boost::json::value doc = boost::json::parse(frame, ec);
  const boost::json::object* obj = ec ? nullptr : doc.if_object();

  if (const auto* err = std::get_if<decode_error>(&result)) {
    ++seen.errors[err->code];
    EXPECT_FALSE(err->message.empty());
    static const std::set<error_code> decoder_codes = {error_code::malformed_json, error_code::not_an_object,
                                                       error_code::unknown_op,     error_code::bad_request,
                                                       error_code::invalid_room,   error_code::text_too_long,
                                                       error_code::invalid_text};
    EXPECT_TRUE(decoder_codes.count(err->code)) << to_string(err->code);
    if (ec) {
      EXPECT_TRUE(err->code == error_code::malformed_json || err->code == error_code::invalid_text)
          << to_string(err->code);
      return;
    }
    if (obj == nullptr) {
      EXPECT_EQ(err->code, error_code::not_an_object);
      return;
    }
    // An error about an object goes back as a reply whenever the frame carried an id to reply to.
    const boost::json::value* id = obj->if_contains("id");
    if (id != nullptr && id->is_int64()) {
      EXPECT_EQ(err->id, id->get_int64()) << to_string(err->code);
    } else {
      EXPECT_FALSE(err->id.has_value());
    }
    return;
  }

  const auto& req = std::get<request>(result);
  ASSERT_NE(obj, nullptr) << "decoded a frame that is not a JSON object";
  ++seen.decoded[std::string(op_name(req.op))];
  ASSERT_TRUE(obj->contains("id") && obj->at("id").is_int64());
  EXPECT_EQ(req.id, obj->at("id").get_int64());
  ASSERT_TRUE(obj->contains("op") && obj->at("op").is_string());
  EXPECT_EQ(op_name(req.op), std::string_view(obj->at("op").get_string()));
  if (const std::string* room = room_of(req.op)) {
    EXPECT_TRUE(valid_room_id(*room)) << *room;
    EXPECT_EQ(*room, std::string_view(obj->at("room").get_string()));
  }
  if (const auto* send = std::get_if<send_op>(&req.op)) {
    EXPECT_EQ(send->text, std::string_view(obj->at("text").get_string()));
    EXPECT_FALSE(send->text.empty());
    EXPECT_LE(code_points(send->text), limits.max_message_chars);
    EXPECT_EQ(send->text.find('\0'), std::string::npos);
    EXPECT_LE(send->client_msg_id.size(), limits.max_client_msg_id_chars);
    for (char c : send->client_msg_id) EXPECT_TRUE(c >= 0x20 && c <= 0x7E) << send->client_msg_id;
  }
  if (const auto* history = std::get_if<history_op>(&req.op)) {
    EXPECT_GE(history->limit, 1u);
    EXPECT_LE(history->limit, limits.max_history_limit);
    EXPECT_TRUE(history->from.has_value() || history->dir == history_direction::older);
  }
  if (const auto* members = std::get_if<members_op>(&req.op)) {
    EXPECT_GE(members->limit, 1u);
    EXPECT_LE(members->limit, max_members_limit);
  }
}

TEST(ProtocolMutations, BrokenBytesGetAnErrorThatMatchesTheFrameOrAValidRequest) {
  rng gen(20261202);
  tally seen;
  for (int i = 0; i < 30000 && !::testing::Test::HasFatalFailure(); ++i)
    check(mutate_bytes(corpus[pick(gen, corpus.size())], gen), seen);
  // The mutations reached the parser's and the decoder's rules, not only one of them.
  EXPECT_GT(seen.errors[error_code::malformed_json], 1000);
  EXPECT_GT(seen.errors[error_code::not_an_object], 0);
  EXPECT_GT(seen.errors[error_code::bad_request], 0);
  EXPECT_GT(seen.errors[error_code::unknown_op], 0);
  EXPECT_GE(seen.decoded.size(), 6u);
}

TEST(ProtocolMutations, WrongFieldValuesGetTheRightErrorOrAValidRequest) {
  rng gen(7);
  tally seen;
  for (int i = 0; i < 30000 && !::testing::Test::HasFatalFailure(); ++i)
    check(mutate_fields(corpus[pick(gen, corpus.size())], gen), seen);
  for (auto code : {error_code::not_an_object, error_code::unknown_op, error_code::bad_request,
                    error_code::invalid_room, error_code::text_too_long, error_code::invalid_text})
    EXPECT_GT(seen.errors[code], 0) << to_string(code);
  EXPECT_EQ(seen.decoded.size(), 8u) << "every operation still decodes when its mutation left it valid";
}

}  // namespace
}  // namespace chorus::protocol
