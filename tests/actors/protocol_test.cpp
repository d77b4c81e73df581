// Unit tests for the wire protocol: every decode rule and error code, every encoder read back as JSON.
#include "actors/protocol.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace chorus::protocol {
namespace {

const decode_limits default_limits{};

request decoded(std::string_view frame, const decode_limits& limits = default_limits) {
  auto result = decode_request(frame, limits);
  if (auto* err = std::get_if<decode_error>(&result)) {
    ADD_FAILURE() << "unexpected " << to_string(err->code) << " (" << err->message << ") for " << frame;
    return {};
  }
  return std::get<request>(std::move(result));
}

decode_error failed(std::string_view frame, const decode_limits& limits = default_limits) {
  auto result = decode_request(frame, limits);
  if (auto* req = std::get_if<request>(&result)) {
    ADD_FAILURE() << "decoded op #" << req->op.index() << " from " << frame;
    return {error_code::internal, "", std::nullopt};
  }
  return std::get<decode_error>(std::move(result));
}

/// Parses encoder output back, after checking it is one line (frames join objects with '\n').
boost::json::object parsed(const std::string& encoded) {
  EXPECT_EQ(encoded.find('\n'), std::string::npos) << encoded;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(encoded, ec);
  EXPECT_FALSE(ec) << ec.message() << ": " << encoded;
  EXPECT_TRUE(v.is_object()) << encoded;
  return v.is_object() ? v.get_object() : boost::json::object{};
}

std::string str(const boost::json::value& v) {
  return std::string(v.as_string().data(), v.as_string().size());
}

std::string repeat(std::string_view unit, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out.append(unit);
  return out;
}

std::string send_frame(std::string_view json_text) {
  return R"({"op":"send","id":3,"room":"general","text":)" + std::string(json_text) + "}";
}

/// A frame that must fail with bad_request, and the field the message must name.
struct field_case {
  const char* frame;
  const char* field;
};

// ---- decoding: valid requests ----

TEST(ProtocolDecode, Auth) {
  const request req = decoded(R"({"op":"auth","id":1,"token":"abc.def.ghi"})");
  EXPECT_EQ(req.id, 1);
  ASSERT_TRUE(std::holds_alternative<auth_op>(req.op));
  EXPECT_EQ(std::get<auth_op>(req.op).token, "abc.def.ghi");
}

TEST(ProtocolDecode, JoinLeaveTyping) {
  const request join = decoded(R"({"op":"join","id":2,"room":"general"})");
  EXPECT_EQ(join.id, 2);
  ASSERT_TRUE(std::holds_alternative<join_op>(join.op));
  EXPECT_EQ(std::get<join_op>(join.op).room, "general");

  const request leave = decoded(R"({"op":"leave","id":3,"room":"dev-ops_2"})");
  ASSERT_TRUE(std::holds_alternative<leave_op>(leave.op));
  EXPECT_EQ(std::get<leave_op>(leave.op).room, "dev-ops_2");

  const request typing = decoded(R"({"room":"r","id":4,"op":"typing"})");
  ASSERT_TRUE(std::holds_alternative<typing_op>(typing.op));
  EXPECT_EQ(std::get<typing_op>(typing.op).room, "r");
}

TEST(ProtocolDecode, JoinWithoutLastSeq) {
  for (const char* frame : {R"({"op":"join","id":2,"room":"general"})",
                            R"({"op":"join","id":2,"room":"general","last_seq":null})"}) {
    const request req = decoded(frame);
    ASSERT_TRUE(std::holds_alternative<join_op>(req.op)) << frame;
    EXPECT_FALSE(std::get<join_op>(req.op).last_seq.has_value()) << frame;
  }
}

TEST(ProtocolDecode, JoinWithLastSeq) {
  const struct {
    const char* json;
    std::uint64_t want;
  } cases[] = {
      {"0", 0},
      {"41", 41},
      {"9223372036854775807", 9223372036854775807ull},
      {"9223372036854775808", 9223372036854775808ull},  // past int64: Boost.JSON stores it as uint64
      {"18446744073709551615", std::numeric_limits<std::uint64_t>::max()},
  };
  for (const auto& c : cases) {
    const request req =
        decoded(std::string(R"({"op":"join","id":2,"room":"general","last_seq":)") + c.json + "}");
    ASSERT_TRUE(std::holds_alternative<join_op>(req.op)) << c.json;
    const auto& op = std::get<join_op>(req.op);
    EXPECT_EQ(op.room, "general");
    EXPECT_EQ(op.last_seq, c.want) << c.json;
  }
}

TEST(ProtocolDecodeError, JoinLastSeqWrongType) {
  for (const char* json : {"-1", "-9223372036854775808", "1.5", "7.0", "1e2", "18446744073709551616",
                           R"("5")", "true", "[5]", R"({"seq":5})"}) {
    const std::string frame = std::string(R"({"op":"join","id":8,"room":"general","last_seq":)") + json + "}";
    const decode_error err = failed(frame);
    EXPECT_EQ(err.code, error_code::bad_request) << frame;
    EXPECT_EQ(err.id, 8) << frame;
    EXPECT_NE(err.message.find("last_seq"), std::string::npos) << err.message;
  }
  // The room is checked first.
  EXPECT_EQ(failed(R"({"op":"join","id":8,"room":"Bad","last_seq":-1})").code, error_code::invalid_room);
}

TEST(ProtocolDecode, Send) {
  const request req = decoded(R"({"op":"send","id":7,"room":"general","text":"hi","client_msg_id":"c-123"})");
  EXPECT_EQ(req.id, 7);
  ASSERT_TRUE(std::holds_alternative<send_op>(req.op));
  const auto& op = std::get<send_op>(req.op);
  EXPECT_EQ(op.room, "general");
  EXPECT_EQ(op.text, "hi");
  EXPECT_EQ(op.client_msg_id, "c-123");
}

TEST(ProtocolDecode, SendWithoutOrWithNullClientMsgId) {
  for (const char* frame : {R"({"op":"send","id":7,"room":"general","text":"hi"})",
                            R"({"op":"send","id":7,"room":"general","text":"hi","client_msg_id":null})"}) {
    const request req = decoded(frame);
    ASSERT_TRUE(std::holds_alternative<send_op>(req.op)) << frame;
    EXPECT_EQ(std::get<send_op>(req.op).client_msg_id, "") << frame;
  }
}

TEST(ProtocolDecode, SendKeepsTextExactly) {
  const request req = decoded(send_frame(R"("  héllo \"quoted\"\n\\ \ud83d\ude00 \u0001 ")"));
  ASSERT_TRUE(std::holds_alternative<send_op>(req.op));
  EXPECT_EQ(std::get<send_op>(req.op).text, "  h\xC3\xA9llo \"quoted\"\n\\ \xF0\x9F\x98\x80 \x01 ");
}

TEST(ProtocolDecode, Ping) {
  const request req = decoded(R"({"op":"ping","id":9})");
  EXPECT_EQ(req.id, 9);
  EXPECT_TRUE(std::holds_alternative<ping_op>(req.op));
}

// ---- history ----

history_op decoded_history(std::string_view fields, const decode_limits& limits = default_limits) {
  const request req =
      decoded(R"({"op":"history","id":5,"room":"general")" + std::string(fields) + "}", limits);
  EXPECT_EQ(req.id, 5);
  if (!std::holds_alternative<history_op>(req.op)) {
    ADD_FAILURE() << "not a history op: " << fields;
    return {};
  }
  const auto op = std::get<history_op>(req.op);
  EXPECT_EQ(op.room, "general");
  return op;
}

decode_error failed_history(std::string_view fields, const decode_limits& limits = default_limits) {
  return failed(R"({"op":"history","id":5,"room":"general")" + std::string(fields) + "}", limits);
}

TEST(ProtocolHistory, NewestByDefault) {
  for (const char* fields : {"", R"(,"before":null)", R"(,"before":null,"after":null,"cursor":null)"}) {
    const history_op op = decoded_history(fields);
    EXPECT_EQ(op.dir, history_direction::older) << fields;
    EXPECT_FALSE(op.from.has_value()) << fields;
    EXPECT_EQ(op.limit, 50u) << fields;
  }
}

TEST(ProtocolHistory, Before) {
  const history_op op = decoded_history(R"(,"before":120,"limit":50)");
  EXPECT_EQ(op.dir, history_direction::older);
  EXPECT_EQ(op.from, 120u);
  EXPECT_EQ(op.limit, 50u);

  const history_op zero = decoded_history(R"(,"before":0)");
  EXPECT_EQ(zero.dir, history_direction::older);
  EXPECT_EQ(zero.from, 0u);

  const history_op huge = decoded_history(R"(,"before":18446744073709551615)");
  EXPECT_EQ(huge.from, std::numeric_limits<std::uint64_t>::max());
}

TEST(ProtocolHistory, After) {
  const history_op op = decoded_history(R"(,"after":80,"limit":7)");
  EXPECT_EQ(op.dir, history_direction::newer);
  EXPECT_EQ(op.from, 80u);
  EXPECT_EQ(op.limit, 7u);

  const history_op from_start = decoded_history(R"(,"after":0,"before":null)");
  EXPECT_EQ(from_start.dir, history_direction::newer);
  EXPECT_EQ(from_start.from, 0u);
}

TEST(ProtocolHistory, MakeCursor) {
  EXPECT_EQ(make_cursor(history_direction::older, 120), "o:120");
  EXPECT_EQ(make_cursor(history_direction::newer, 80), "n:80");
  EXPECT_EQ(make_cursor(history_direction::older, 0), "o:0");
  EXPECT_EQ(make_cursor(history_direction::newer, std::numeric_limits<std::uint64_t>::max()),
            "n:18446744073709551615");
}

TEST(ProtocolHistory, CursorRoundTrip) {
  for (const auto dir : {history_direction::older, history_direction::newer}) {
    for (const std::uint64_t from :
         {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{70}, std::uint64_t{1000000},
          std::uint64_t{9223372036854775807ull}, std::numeric_limits<std::uint64_t>::max()}) {
      const std::string cursor = make_cursor(dir, from);
      const history_op op = decoded_history(R"(,"limit":3,"cursor":")" + cursor + "\"");
      EXPECT_EQ(op.dir, dir) << cursor;
      EXPECT_EQ(op.from, from) << cursor;
      EXPECT_EQ(op.limit, 3u) << cursor;
    }
  }
}

TEST(ProtocolHistory, MalformedCursor) {
  for (const char* cursor : {R"("")",
                             R"("o")",
                             R"("o:")",
                             R"("n:")",
                             R"(":5")",
                             R"("x:5")",
                             R"("O:5")",
                             R"("o;5")",
                             R"("o5")",
                             R"("o:-1")",
                             R"("o:+1")",
                             R"("o:01")",
                             R"("n:00")",
                             R"("o:1a")",
                             R"("o: 1")",
                             R"("o:1 ")",
                             R"(" o:1")",
                             R"("n:1.0")",
                             R"("n:1e3")",
                             R"("o:18446744073709551616")",
                             R"("o:99999999999999999999999999")",
                             R"("o:1\u0000")",
                             R"("on:1")",
                             "5",
                             "120",
                             "true",
                             "[\"o:1\"]",
                             R"({"o":1})"}) {
    const decode_error err = failed_history(std::string(R"(,"cursor":)") + cursor);
    EXPECT_EQ(err.code, error_code::bad_request) << cursor;
    EXPECT_EQ(err.id, 5) << cursor;
    EXPECT_NE(err.message.find("cursor"), std::string::npos) << err.message;
  }
}

TEST(ProtocolHistory, PositionWrongType) {
  const field_case cases[] = {
      {R"(,"before":-1)", "before"},   {R"(,"before":1.5)", "before"},      {R"(,"before":"120")", "before"},
      {R"(,"before":true)", "before"}, {R"(,"before":[120])", "before"},    {R"(,"after":-80)", "after"},
      {R"(,"after":8e1)", "after"},    {R"(,"after":{"seq":80})", "after"}, {R"(,"after":"80")", "after"},
  };
  for (const auto& c : cases) {
    const decode_error err = failed_history(c.frame);
    EXPECT_EQ(err.code, error_code::bad_request) << c.frame;
    EXPECT_EQ(err.id, 5) << c.frame;
    EXPECT_NE(err.message.find(c.field), std::string::npos) << c.frame << " -> " << err.message;
  }
}

TEST(ProtocolHistory, AtMostOnePosition) {
  for (const char* fields :
       {R"(,"before":120,"after":80)", R"(,"before":120,"cursor":"o:70")", R"(,"after":80,"cursor":"n:90")",
        R"(,"before":1,"after":1,"cursor":"o:1")", R"(,"before":0,"after":0)"}) {
    const decode_error err = failed_history(fields);
    EXPECT_EQ(err.code, error_code::bad_request) << fields;
    EXPECT_EQ(err.id, 5) << fields;
    EXPECT_NE(err.message.find("at most one"), std::string::npos) << err.message;
  }
  // null is absent, so it does not count.
  EXPECT_EQ(decoded_history(R"(,"before":null,"after":80,"cursor":null)").from, 80u);
  EXPECT_EQ(decoded_history(R"(,"before":null,"after":null,"cursor":"n:3")").dir, history_direction::newer);
}

TEST(ProtocolHistory, Limit) {
  EXPECT_EQ(decoded_history(R"(,"limit":1)").limit, 1u);
  EXPECT_EQ(decoded_history(R"(,"limit":100)").limit, 100u);
  EXPECT_EQ(decoded_history(R"(,"limit":null)").limit, 50u);
  for (const char* json : {"0", "-1", "101", "4294967297", "18446744073709551615", "1.5", "10.0", "1e1",
                           R"("10")", "true", "[10]"}) {
    const decode_error err = failed_history(std::string(R"(,"limit":)") + json);
    EXPECT_EQ(err.code, error_code::bad_request) << json;
    EXPECT_EQ(err.id, 5) << json;
    EXPECT_NE(err.message.find("limit"), std::string::npos) << err.message;
    EXPECT_NE(err.message.find("100"), std::string::npos) << err.message;
  }
}

TEST(ProtocolHistory, LimitFollowsLimits) {
  decode_limits small;
  small.max_history_limit = 20;
  EXPECT_EQ(decoded_history("", small).limit, 20u);  // the default 50 is clamped to the maximum
  EXPECT_EQ(decoded_history(R"(,"limit":20)", small).limit, 20u);
  const decode_error err = failed_history(R"(,"limit":21)", small);
  EXPECT_EQ(err.code, error_code::bad_request);
  EXPECT_NE(err.message.find("limit"), std::string::npos) << err.message;
  EXPECT_NE(err.message.find("20"), std::string::npos) << err.message;

  decode_limits large;
  large.max_history_limit = 1000;
  EXPECT_EQ(decoded_history("", large).limit, 50u);
  EXPECT_EQ(decoded_history(R"(,"limit":1000)", large).limit, 1000u);
  EXPECT_EQ(failed_history(R"(,"limit":1001)", large).code, error_code::bad_request);
}

TEST(ProtocolHistory, RoomAndIdErrors) {
  for (const char* frame : {R"({"op":"history","id":5})", R"({"op":"history","id":5,"room":7})",
                            R"({"op":"history","id":5,"room":null,"before":3})"}) {
    const decode_error err = failed(frame);
    EXPECT_EQ(err.code, error_code::bad_request) << frame;
    EXPECT_EQ(err.id, 5) << frame;
    EXPECT_NE(err.message.find("room"), std::string::npos) << err.message;
  }
  EXPECT_EQ(failed(R"({"op":"history","id":5,"room":"Nope"})").code, error_code::invalid_room);
  const decode_error no_id = failed(R"({"op":"history","room":"general"})");
  EXPECT_EQ(no_id.code, error_code::bad_request);
  EXPECT_FALSE(no_id.id.has_value());
  EXPECT_EQ(failed(R"({"op":"History","id":5,"room":"general"})").code, error_code::unknown_op);
}

TEST(ProtocolHistory, LoneSurrogateInCursor) {
  const decode_error err = failed(R"({"op":"history","id":5,"room":"general","cursor":"o:\ud800"})");
  EXPECT_EQ(err.code, error_code::invalid_text);
  EXPECT_EQ(err.id, 5);
  EXPECT_NE(err.message.find("cursor"), std::string::npos) << err.message;
}

// ---- members ----

TEST(ProtocolMembers, FirstPageByDefaultThenAfterAndLimit) {
  auto first = decoded(R"({"op":"members","id":6,"room":"lobby"})");
  ASSERT_TRUE(std::holds_alternative<members_op>(first.op));
  const auto& op = std::get<members_op>(first.op);
  EXPECT_EQ(first.id, 6);
  EXPECT_EQ(op.room, "lobby");
  EXPECT_EQ(op.after, "");
  EXPECT_EQ(op.limit, default_members_limit);

  auto next = decoded(R"({"op":"members","id":7,"room":"lobby","after":"bob","limit":1000})");
  const auto& more = std::get<members_op>(next.op);
  EXPECT_EQ(more.after, "bob");
  EXPECT_EQ(more.limit, 1000u);
  const auto nulls = decoded(R"({"op":"members","id":7,"room":"lobby","after":null,"limit":null})");
  EXPECT_EQ(std::get<members_op>(nulls.op).limit, default_members_limit);
}

TEST(ProtocolMembers, BadFieldsAreBadRequestsThatNameThem) {
  const field_case cases[] = {
      {R"({"op":"members","id":8})", "room"},
      {R"({"op":"members","id":8,"room":3})", "room"},
      {R"({"op":"members","id":8,"room":"lobby","after":7})", "after"},
      {R"({"op":"members","id":8,"room":"lobby","after":["bob"]})", "after"},
      {R"({"op":"members","id":8,"room":"lobby","limit":0})", "limit"},
      {R"({"op":"members","id":8,"room":"lobby","limit":1001})", "limit"},
      {R"({"op":"members","id":8,"room":"lobby","limit":"10"})", "limit"},
      {R"({"op":"members","id":8,"room":"lobby","limit":2.5})", "limit"},
  };
  for (const auto& c : cases) {
    const decode_error err = failed(c.frame);
    EXPECT_EQ(err.code, error_code::bad_request) << c.frame;
    EXPECT_EQ(err.id, 8) << c.frame;
    EXPECT_NE(err.message.find(c.field), std::string::npos) << c.frame << " -> " << err.message;
  }
  const std::string long_after =
      R"({"op":"members","id":8,"room":"lobby","after":")" + std::string(257, 'a') + R"("})";
  EXPECT_EQ(failed(long_after).code, error_code::bad_request);
  EXPECT_EQ(failed(R"({"op":"members","id":8,"room":"No Such"})").code, error_code::invalid_room);
}

TEST(ProtocolMembers, ReplyCarriesTheCountAndWhereToGoOn) {
  const std::vector<member_info> two{{"ann", true}, {"bob", true}};
  EXPECT_EQ(encode_members_ok(6, "lobby", 5000, two, true),
            R"({"re":6,"ok":true,"d":{"room":"lobby","member_count":5000,)"
            R"("members":[{"user":"ann","online":true},{"user":"bob","online":true}],"next":"bob"}})");
  const auto last = parsed(encode_members_ok(7, "lobby", 2, two, false));
  EXPECT_TRUE(last.at("d").at("next").is_null());
  const auto none = parsed(encode_members_ok(8, "lobby", 0, {}, false));
  EXPECT_TRUE(none.at("d").at("members").as_array().empty());
  EXPECT_TRUE(none.at("d").at("next").is_null());
}

TEST(ProtocolDecode, UnknownFieldsAreIgnored) {
  const request req = decoded(R"({"op":"join","id":5,"room":"general","future":{"x":[1,2]},"v":2})");
  ASSERT_TRUE(std::holds_alternative<join_op>(req.op));
  EXPECT_EQ(std::get<join_op>(req.op).room, "general");
}

TEST(ProtocolDecode, IdRange) {
  EXPECT_EQ(decoded(R"({"op":"ping","id":0})").id, 0);
  EXPECT_EQ(decoded(R"({"op":"ping","id":-5})").id, -5);
  EXPECT_EQ(decoded(R"({"op":"ping","id":9223372036854775807})").id,
            std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(decoded(R"({"op":"ping","id":-9223372036854775808})").id,
            std::numeric_limits<std::int64_t>::min());
}

TEST(ProtocolDecode, WhitespaceAroundJsonIsFine) {
  EXPECT_EQ(decoded(" \n\t{\"op\":\"ping\",\"id\":1}\r\n ").id, 1);
}

// ---- decoding: errors ----

TEST(ProtocolDecodeError, MalformedJson) {
  for (const char* frame : {"", " ", "{", "not json", R"({"op":"ping","id":1)", R"({"op":"ping","id":1,})",
                            R"({"op":"ping","id":1} {"op":"ping","id":2})", "{op:\"ping\",\"id\":1}",
                            R"({"op":"ping","id":1,"x":"\u12g4"})", R"({"op":"ping","id":1,"x":'a'})"}) {
    const decode_error err = failed(frame);
    EXPECT_EQ(err.code, error_code::malformed_json) << frame;
    EXPECT_FALSE(err.id.has_value()) << frame;
    EXPECT_FALSE(err.message.empty());
  }
}

TEST(ProtocolDecodeError, TooDeepIsMalformed) {
  const std::string frame = R"({"op":"ping","id":1,"x":)" + repeat("[", 100) + repeat("]", 100) + "}";
  EXPECT_EQ(failed(frame).code, error_code::malformed_json);
}

TEST(ProtocolDecodeError, NotAnObject) {
  for (const char* frame :
       {"[]", R"([{"op":"ping","id":1}])", R"("ping")", "42", "null", "true", "[1,2,3]"}) {
    const decode_error err = failed(frame);
    EXPECT_EQ(err.code, error_code::not_an_object) << frame;
    EXPECT_FALSE(err.id.has_value()) << frame;
  }
}

TEST(ProtocolDecodeError, OpMissingOrNotAString) {
  for (const char* frame :
       {R"({"id":4})", R"({"id":4,"op":1})", R"({"id":4,"op":null})", R"({"id":4,"op":["ping"]})",
        R"({"id":4,"op":{"name":"ping"}})", R"({"id":4,"op":true})"}) {
    const decode_error err = failed(frame);
    EXPECT_EQ(err.code, error_code::bad_request) << frame;
    EXPECT_EQ(err.id, 4) << frame;
    EXPECT_NE(err.message.find("op"), std::string::npos) << err.message;
  }
  const decode_error no_id = failed("{}");
  EXPECT_EQ(no_id.code, error_code::bad_request);
  EXPECT_FALSE(no_id.id.has_value());
}

TEST(ProtocolDecodeError, IdMissingOrNotAnInteger) {
  for (const char* frame :
       {R"({"op":"ping"})", R"({"op":"ping","id":"7"})", R"({"op":"ping","id":1.5})",
        R"({"op":"ping","id":7.0})", R"({"op":"ping","id":1e2})", R"({"op":"ping","id":null})",
        R"({"op":"ping","id":true})", R"({"op":"ping","id":[7]})", R"({"op":"ping","id":{"n":7}})",
        R"({"op":"ping","id":9223372036854775808})", R"({"op":"send","room":"general","text":"hi"})"}) {
    const decode_error err = failed(frame);
    EXPECT_EQ(err.code, error_code::bad_request) << frame;
    EXPECT_FALSE(err.id.has_value()) << frame;
    EXPECT_NE(err.message.find("id"), std::string::npos) << err.message;
  }
}

TEST(ProtocolDecodeError, UnknownOp) {
  for (const char* frame : {R"({"op":"shout","id":11})", R"({"op":"","id":11})", R"({"op":"SEND","id":11})",
                            R"({"op":"ping ","id":11})"}) {
    const decode_error err = failed(frame);
    EXPECT_EQ(err.code, error_code::unknown_op) << frame;
    EXPECT_EQ(err.id, 11) << frame;
  }
  const decode_error without_id = failed(R"({"op":"shout"})");
  EXPECT_EQ(without_id.code, error_code::unknown_op);
  EXPECT_FALSE(without_id.id.has_value());
  EXPECT_NE(without_id.message.find("shout"), std::string::npos) << without_id.message;
}

TEST(ProtocolDecodeError, UnknownOpNameIsTruncatedAtACodePoint) {
  const decode_error err = failed(R"({"op":")" + repeat("\xC3\xA9", 40) + R"(","id":1})");
  EXPECT_EQ(err.code, error_code::unknown_op);
  EXPECT_LT(err.message.size(), 60u);
  // Still valid UTF-8 after truncation: the encoder would otherwise have to substitute U+FFFD.
  const auto obj = parsed(encode_error_reply(1, err.code, err.message));
  EXPECT_EQ(str(obj.at("error").at("message")).find("\xEF\xBF\xBD"), std::string::npos);
}

TEST(ProtocolDecodeError, RequiredFieldMissingOrWrongType) {
  const field_case cases[] = {
      {R"({"op":"auth","id":8})", "token"},
      {R"({"op":"auth","id":8,"token":1})", "token"},
      {R"({"op":"auth","id":8,"token":null})", "token"},
      {R"({"op":"auth","id":8,"token":["a"]})", "token"},
      {R"({"op":"auth","id":8,"token":{"jwt":"a"}})", "token"},
      {R"({"op":"join","id":8})", "room"},
      {R"({"op":"join","id":8,"room":5})", "room"},
      {R"({"op":"join","id":8,"room":null})", "room"},
      {R"({"op":"join","id":8,"room":["general"]})", "room"},
      {R"({"op":"leave","id":8})", "room"},
      {R"({"op":"leave","id":8,"room":false})", "room"},
      {R"({"op":"typing","id":8})", "room"},
      {R"({"op":"typing","id":8,"room":{}})", "room"},
      {R"({"op":"send","id":8,"text":"hi"})", "room"},
      {R"({"op":"send","id":8,"room":1,"text":"hi"})", "room"},
      {R"({"op":"send","id":8,"room":"general"})", "text"},
      {R"({"op":"send","id":8,"room":"general","text":null})", "text"},
      {R"({"op":"send","id":8,"room":"general","text":42})", "text"},
      {R"({"op":"send","id":8,"room":"general","text":["hi"]})", "text"},
      {R"({"op":"send","id":8,"room":"general","text":{"body":"hi"}})", "text"},
      {R"({"op":"send","id":8,"room":"general","text":"hi","client_msg_id":5})", "client_msg_id"},
      {R"({"op":"send","id":8,"room":"general","text":"hi","client_msg_id":true})", "client_msg_id"},
      {R"({"op":"send","id":8,"room":"general","text":"hi","client_msg_id":["c"]})", "client_msg_id"},
      {R"({"op":"send","id":8,"room":"general","text":"hi","client_msg_id":""})", "client_msg_id"},
      {R"({"op":"send","id":8,"room":"general","text":"hi","client_msg_id":"a\nb"})", "client_msg_id"},
      {R"({"op":"send","id":8,"room":"general","text":"hi","client_msg_id":"a\u007fb"})", "client_msg_id"},
      {R"({"op":"send","id":8,"room":"general","text":"hi","client_msg_id":"caf\u00e9"})", "client_msg_id"},
  };
  for (const auto& c : cases) {
    const decode_error err = failed(c.frame);
    EXPECT_EQ(err.code, error_code::bad_request) << c.frame;
    EXPECT_EQ(err.id, 8) << c.frame;
    EXPECT_NE(err.message.find(c.field), std::string::npos) << c.frame << " -> " << err.message;
  }
}

TEST(ProtocolDecode, ClientMsgIdLength) {
  const auto frame = [](const std::string& cid) {
    return R"({"op":"send","id":1,"room":"general","text":"hi","client_msg_id":")" + cid + "\"}";
  };
  EXPECT_EQ(std::get<send_op>(decoded(frame("x")).op).client_msg_id, "x");
  EXPECT_EQ(std::get<send_op>(decoded(frame(repeat("a", 64))).op).client_msg_id, repeat("a", 64));
  EXPECT_EQ(std::get<send_op>(decoded(frame("~ !\\\"{}")).op).client_msg_id, "~ !\"{}");
  EXPECT_EQ(failed(frame(repeat("a", 65))).code, error_code::bad_request);

  decode_limits small;
  small.max_client_msg_id_chars = 4;
  EXPECT_EQ(std::get<send_op>(decoded(frame("abcd"), small).op).client_msg_id, "abcd");
  EXPECT_EQ(failed(frame("abcde"), small).code, error_code::bad_request);
}

TEST(ProtocolDecodeError, InvalidRoom) {
  for (const char* room :
       {"General", "", "-general", "_general", "gen eral", "gen.eral", "caf\\u00e9", "a/b"}) {
    for (const char* op : {"join", "leave", "typing", "history"}) {
      const std::string frame = std::string(R"({"op":")") + op + R"(","id":12,"room":")" + room + "\"}";
      const decode_error err = failed(frame);
      EXPECT_EQ(err.code, error_code::invalid_room) << frame;
      EXPECT_EQ(err.id, 12) << frame;
      EXPECT_NE(err.message.find("room"), std::string::npos) << err.message;
    }
  }
  const decode_error send = failed(R"({"op":"send","id":12,"room":"Nope","text":"hi"})");
  EXPECT_EQ(send.code, error_code::invalid_room);
  EXPECT_EQ(send.id, 12);
  EXPECT_EQ(failed(R"({"op":"join","id":1,"room":")" + repeat("a", 65) + "\"}").code,
            error_code::invalid_room);
  EXPECT_EQ(std::get<join_op>(decoded(R"({"op":"join","id":1,"room":")" + repeat("a", 64) + "\"}").op).room,
            repeat("a", 64));
}

TEST(ProtocolDecodeError, EmptyOrWhitespaceText) {
  for (const char* text : {R"("")", R"(" ")", R"("   ")", R"("\t\n\r ")", R"("\u00a0")", R"("\u3000 \u2003")",
                           R"("\u200b")", R"("\ufeff\u2028")"}) {
    const decode_error err = failed(send_frame(text));
    EXPECT_EQ(err.code, error_code::invalid_text) << text;
    EXPECT_EQ(err.id, 3) << text;
    EXPECT_NE(err.message.find("text"), std::string::npos) << err.message;
  }
  EXPECT_EQ(std::get<send_op>(decoded(send_frame(R"(" . ")")).op).text, " . ");
}

TEST(ProtocolDecodeError, TextLengthCountsCodePoints) {
  const std::string e_acute = "\xC3\xA9";           // 2 bytes
  const std::string grinning = "\xF0\x9F\x98\x80";  // 4 bytes
  for (const std::string& unit : {std::string("a"), e_acute, grinning, std::string("\xE4\xB8\xAD")}) {
    const request ok = decoded(send_frame("\"" + repeat(unit, 4000) + "\""));
    EXPECT_EQ(std::get<send_op>(ok.op).text.size(), 4000 * unit.size());

    const decode_error err = failed(send_frame("\"" + repeat(unit, 4001) + "\""));
    EXPECT_EQ(err.code, error_code::text_too_long) << unit;
    EXPECT_EQ(err.id, 3);
    EXPECT_NE(err.message.find("4000"), std::string::npos) << err.message;
  }
  // A surrogate-pair escape is one code point, not two.
  EXPECT_TRUE(std::holds_alternative<request>(
      decode_request(send_frame("\"" + repeat("\\ud83d\\ude00", 4000) + "\""), default_limits)));
  EXPECT_EQ(failed(send_frame("\"" + repeat("\\ud83d\\ude00", 4001) + "\"")).code, error_code::text_too_long);
}

TEST(ProtocolDecodeError, TextLengthFollowsLimits) {
  decode_limits small;
  small.max_message_chars = 3;
  EXPECT_EQ(std::get<send_op>(decoded(send_frame(R"("abc")"), small).op).text, "abc");
  EXPECT_EQ(failed(send_frame(R"("abcd")"), small).code, error_code::text_too_long);
}

TEST(ProtocolDecodeError, LoneSurrogateIsInvalidText) {
  for (const char* text :
       {R"("\ud800")", R"("\udc00")", R"("a\ud800b")", R"("\ud800\u0041")", R"("\udc00\ud800")",
        R"("\ud83d")", R"("ok \ude00")", R"("\uDBFF\uDBFF")", R"("\ud800\\")"}) {
    const decode_error err = failed(send_frame(text));
    EXPECT_EQ(err.code, error_code::invalid_text) << text;
    EXPECT_EQ(err.id, 3) << text;
    EXPECT_NE(err.message.find("text"), std::string::npos) << err.message;
  }
}

TEST(ProtocolDecodeError, LoneSurrogateElsewhere) {
  const decode_error in_room = failed(R"({"op":"join","id":6,"room":"\ud800"})");
  EXPECT_EQ(in_room.code, error_code::invalid_text);
  EXPECT_EQ(in_room.id, 6);
  EXPECT_NE(in_room.message.find("room"), std::string::npos) << in_room.message;

  const decode_error no_id = failed(R"({"op":"send","room":"general","text":"\ud800"})");
  EXPECT_EQ(no_id.code, error_code::invalid_text);
  EXPECT_FALSE(no_id.id.has_value());

  const decode_error string_id = failed(R"({"op":"send","id":"1","room":"general","text":"\ud800"})");
  EXPECT_EQ(string_id.code, error_code::invalid_text);
  EXPECT_FALSE(string_id.id.has_value());

  const decode_error bare = failed(R"("\udfff")");
  EXPECT_EQ(bare.code, error_code::invalid_text);
  EXPECT_FALSE(bare.id.has_value());

  // Broken in another way as well: the frame is simply not JSON.
  EXPECT_EQ(failed(R"({"op":"send","id":1,"text":"\ud800",})").code, error_code::malformed_json);
}

TEST(ProtocolDecode, EscapedBackslashBeforeUIsNotASurrogate) {
  EXPECT_EQ(std::get<send_op>(decoded(send_frame(R"("\\ud800")")).op).text, "\\ud800");
  EXPECT_EQ(std::get<send_op>(decoded(send_frame(R"("\ud83d\ude00")")).op).text, "\xF0\x9F\x98\x80");
}

TEST(ProtocolDecode, LargeFrameBeyondTheStackBuffer) {
  const std::string padding = repeat("x", 60000);
  const request req =
      decoded(R"({"op":"send","id":1,"room":"general","text":"hi","pad":")" + padding + "\"}");
  EXPECT_EQ(std::get<send_op>(req.op).text, "hi");
}

// ---- valid_room_id ----

TEST(ProtocolRoomId, Table) {
  const struct {
    std::string room;
    bool valid;
  } cases[] = {
      {"general", true},
      {"a", true},
      {"0", true},
      {"9lives", true},
      {"dev-ops", true},
      {"dev_ops", true},
      {"a-", true},
      {"a_", true},
      {repeat("a", 64), true},
      {"a" + repeat("-", 63), true},
      {"", false},
      {repeat("a", 65), false},
      {"General", false},
      {"generaL", false},
      {"-general", false},
      {"_general", false},
      {"gen eral", false},
      {"gen.eral", false},
      {"gen/eral", false},
      {"caf\xC3\xA9", false},
      {std::string("a\0b", 3), false},
      {" general", false},
      {"general\n", false},
  };
  for (const auto& c : cases) EXPECT_EQ(valid_room_id(c.room), c.valid) << '"' << c.room << '"';
}

// ---- error codes ----

TEST(ProtocolErrorCode, NamesMatchEnumerators) {
  const std::pair<error_code, const char*> names[] = {
      {error_code::malformed_json, "malformed_json"},
      {error_code::not_an_object, "not_an_object"},
      {error_code::unsupported_frame, "unsupported_frame"},
      {error_code::unknown_op, "unknown_op"},
      {error_code::bad_request, "bad_request"},
      {error_code::invalid_room, "invalid_room"},
      {error_code::text_too_long, "text_too_long"},
      {error_code::invalid_text, "invalid_text"},
      {error_code::not_joined, "not_joined"},
      {error_code::auth_required, "auth_required"},
      {error_code::already_authenticated, "already_authenticated"},
      {error_code::invalid_token, "invalid_token"},
      {error_code::token_expired, "token_expired"},
      {error_code::rate_limited, "rate_limited"},
      {error_code::unavailable, "unavailable"},
      {error_code::not_found, "not_found"},
      {error_code::forbidden, "forbidden"},
      {error_code::conflict, "conflict"},
      {error_code::invalid_credentials, "invalid_credentials"},
      {error_code::account_locked, "account_locked"},
      {error_code::payload_too_large, "payload_too_large"},
      {error_code::method_not_allowed, "method_not_allowed"},
      {error_code::internal, "internal"},
  };
  EXPECT_EQ(std::size(names), static_cast<std::size_t>(error_code::internal) + 1);
  for (const auto& [code, name] : names) EXPECT_EQ(to_string(code), name);
}

// ---- encoding ----

chat_message sample_message() {
  return chat_message{"m-01H", "general", 42, "alice", "hi", 1795316645123, "c-123"};
}

TEST(ProtocolEncode, Hello) {
  const std::string out =
      encode_hello(hello_event{"node-1", 15000, limits_info{65536, 4000, 20, 50, 1024, 100}});
  EXPECT_EQ(out, R"({"ev":"hello","d":{"protocol":1,"node":"node-1","heartbeat_ms":15000,"limits":{)"
                 R"("max_frame_bytes":65536,"max_message_chars":4000,"ops_per_second":20,"ops_burst":50,)"
                 R"("send_queue_limit":1024,"history_limit":100}}})");
  const auto obj = parsed(out);
  EXPECT_EQ(str(obj.at("ev")), "hello");
  const auto& d = obj.at("d").as_object();
  EXPECT_EQ(d.at("protocol").as_int64(), 1);
  EXPECT_EQ(str(d.at("node")), "node-1");
  EXPECT_EQ(d.at("heartbeat_ms").as_int64(), 15000);
  const auto& limits = d.at("limits").as_object();
  EXPECT_EQ(limits.at("max_frame_bytes").as_int64(), 65536);
  EXPECT_EQ(limits.at("max_message_chars").as_int64(), 4000);
  EXPECT_EQ(limits.at("ops_per_second").as_int64(), 20);
  EXPECT_EQ(limits.at("ops_burst").as_int64(), 50);
  EXPECT_EQ(limits.at("send_queue_limit").as_int64(), 1024);
  EXPECT_EQ(limits.at("history_limit").as_int64(), 100);
}

TEST(ProtocolEncode, AuthOk) {
  const auto obj = parsed(encode_auth_ok(1, "alice"));
  EXPECT_EQ(obj.size(), 3u);
  EXPECT_EQ(obj.at("re").as_int64(), 1);
  EXPECT_EQ(obj.at("ok").as_bool(), true);
  EXPECT_EQ(obj.at("d").as_object().size(), 1u);
  EXPECT_EQ(str(obj.at("d").at("user")), "alice");
}

TEST(ProtocolEncode, JoinOk) {
  const std::vector<member_info> two{{"bob", true}, {"carol", false}};
  const std::string out = encode_join_ok(2, "general", 41, {two, 2, true}, 3, true);
  EXPECT_EQ(out, R"({"re":2,"ok":true,"d":{"room":"general","last_seq":41,"replayed":3,"complete":true,)"
                 R"("member_count":2,"member_events":true,)"
                 R"("members":[{"user":"bob","online":true},{"user":"carol","online":false}]}})");
  const auto obj = parsed(out);
  EXPECT_EQ(obj.size(), 3u);
  EXPECT_EQ(obj.at("re").as_int64(), 2);
  EXPECT_TRUE(obj.at("ok").as_bool());
  const auto& d = obj.at("d").as_object();
  EXPECT_EQ(d.size(), 7u);
  EXPECT_EQ(str(d.at("room")), "general");
  EXPECT_EQ(d.at("member_count").as_int64(), 2);
  EXPECT_TRUE(d.at("member_events").as_bool());
  EXPECT_EQ(d.at("last_seq").as_int64(), 41);
  EXPECT_EQ(d.at("replayed").as_int64(), 3);
  EXPECT_TRUE(d.at("complete").as_bool());
  const auto& members = d.at("members").as_array();
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(str(members[0].at("user")), "bob");
  EXPECT_TRUE(members[0].at("online").as_bool());
  EXPECT_EQ(str(members[1].at("user")), "carol");
  EXPECT_FALSE(members[1].at("online").as_bool());
}

TEST(ProtocolEncode, JoinOkEmptyRoomAndHugeSeq) {
  const auto max = std::numeric_limits<std::uint64_t>::max();
  const std::vector<member_info> none;
  const auto obj = parsed(encode_join_ok(-1, "r", max, {none, 0, true}, max, true));
  EXPECT_EQ(obj.at("re").as_int64(), -1);
  EXPECT_EQ(obj.at("d").at("member_count").as_int64(), 0);
  EXPECT_EQ(obj.at("d").at("last_seq").as_uint64(), max);
  EXPECT_EQ(obj.at("d").at("replayed").as_uint64(), max);
  EXPECT_TRUE(obj.at("d").at("members").as_array().empty());
}

TEST(ProtocolEncode, JoinOkIncompleteResume) {
  const std::vector<member_info> alice{{"alice", true}};
  const std::string out = encode_join_ok(4, "general", 500, {alice, 1, true}, 100, false);
  EXPECT_EQ(out, R"({"re":4,"ok":true,"d":{"room":"general","last_seq":500,"replayed":100,"complete":false,)"
                 R"("member_count":1,"member_events":true,"members":[{"user":"alice","online":true}]}})");
  const auto obj = parsed(out);
  const auto& d = obj.at("d").as_object();
  EXPECT_EQ(d.at("last_seq").as_int64(), 500);
  EXPECT_EQ(d.at("replayed").as_int64(), 100);
  EXPECT_FALSE(d.at("complete").as_bool());
  EXPECT_EQ(str(d.at("members").at(0).at("user")), "alice");

  const std::vector<member_info> nobody;
  const auto none_obj = parsed(encode_join_ok(4, "general", 0, {nobody, 0, true}, 0, true));
  const auto& none = none_obj.at("d").as_object();
  EXPECT_EQ(none.at("replayed").as_int64(), 0);
  EXPECT_TRUE(none.at("complete").as_bool());
}

TEST(ProtocolEncode, LeaveOk) {
  const auto obj = parsed(encode_leave_ok(3, "general"));
  EXPECT_EQ(obj.at("re").as_int64(), 3);
  EXPECT_TRUE(obj.at("ok").as_bool());
  EXPECT_EQ(obj.at("d").as_object().size(), 1u);
  EXPECT_EQ(str(obj.at("d").at("room")), "general");
}

TEST(ProtocolEncode, SendOk) {
  const std::string out = encode_send_ok(7, sample_message());
  EXPECT_EQ(out, R"({"re":7,"ok":true,"d":{"id":"m-01H","room":"general","seq":42,)"
                 R"("ts":"2026-11-22T03:04:05.123Z","client_msg_id":"c-123"}})");
  const auto obj = parsed(out);
  EXPECT_EQ(obj.at("re").as_int64(), 7);
  EXPECT_TRUE(obj.at("ok").as_bool());
  const auto& d = obj.at("d").as_object();
  EXPECT_EQ(str(d.at("id")), "m-01H");
  EXPECT_EQ(str(d.at("room")), "general");
  EXPECT_EQ(d.at("seq").as_int64(), 42);
  EXPECT_EQ(str(d.at("ts")), "2026-11-22T03:04:05.123Z");
  EXPECT_EQ(str(d.at("client_msg_id")), "c-123");
}

TEST(ProtocolEncode, SendOkOmitsEmptyClientMsgId) {
  chat_message msg = sample_message();
  msg.client_msg_id.clear();
  const auto obj = parsed(encode_send_ok(7, msg));
  EXPECT_FALSE(obj.at("d").as_object().contains("client_msg_id"));
  EXPECT_EQ(obj.at("d").as_object().size(), 4u);
}

TEST(ProtocolEncode, HistoryOk) {
  chat_message newer = sample_message();
  chat_message older{"m-01G", "general", 41, "bob", "yo", 1795316645000, ""};
  const std::string out =
      encode_history_ok(5, "general", {newer, older}, make_cursor(history_direction::older, 41));
  EXPECT_EQ(out, R"({"re":5,"ok":true,"d":{"room":"general","messages":[)"
                 R"({"id":"m-01H","seq":42,"user":"alice","text":"hi","ts":"2026-11-22T03:04:05.123Z",)"
                 R"("client_msg_id":"c-123"},)"
                 R"({"id":"m-01G","seq":41,"user":"bob","text":"yo","ts":"2026-11-22T03:04:05.000Z"}],)"
                 R"("next":"o:41"}})");
  const auto obj = parsed(out);
  EXPECT_EQ(obj.size(), 3u);
  EXPECT_EQ(obj.at("re").as_int64(), 5);
  EXPECT_TRUE(obj.at("ok").as_bool());
  const auto& d = obj.at("d").as_object();
  EXPECT_EQ(d.size(), 3u);
  EXPECT_EQ(str(d.at("room")), "general");
  EXPECT_EQ(str(d.at("next")), "o:41");
  const auto& messages = d.at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u);
  const auto& first = messages[0].as_object();
  EXPECT_EQ(first.size(), 6u);
  EXPECT_EQ(str(first.at("id")), "m-01H");
  EXPECT_EQ(first.at("seq").as_int64(), 42);
  EXPECT_EQ(str(first.at("user")), "alice");
  EXPECT_EQ(str(first.at("text")), "hi");
  EXPECT_EQ(str(first.at("ts")), "2026-11-22T03:04:05.123Z");
  EXPECT_EQ(str(first.at("client_msg_id")), "c-123");
  const auto& second = messages[1].as_object();
  EXPECT_EQ(second.size(), 5u);
  EXPECT_EQ(str(second.at("id")), "m-01G");
  EXPECT_EQ(second.at("seq").as_int64(), 41);
  EXPECT_EQ(str(second.at("user")), "bob");
  EXPECT_EQ(str(second.at("text")), "yo");
  EXPECT_EQ(str(second.at("ts")), "2026-11-22T03:04:05.000Z");
  EXPECT_FALSE(second.contains("client_msg_id"));
  EXPECT_FALSE(second.contains("room"));
}

TEST(ProtocolEncode, HistoryOkLastAndEmptyPages) {
  const std::string empty = encode_history_ok(6, "general", {}, std::nullopt);
  EXPECT_EQ(empty, R"({"re":6,"ok":true,"d":{"room":"general","messages":[],"next":null}})");
  const auto obj = parsed(empty);
  EXPECT_TRUE(obj.at("d").at("messages").as_array().empty());
  EXPECT_TRUE(obj.at("d").at("next").is_null());

  chat_message msg = sample_message();
  msg.seq = std::numeric_limits<std::uint64_t>::max();
  const auto one = parsed(encode_history_ok(7, "general", {msg}, std::nullopt));
  EXPECT_EQ(one.at("d").at("messages").at(0).at("seq").as_uint64(),
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_TRUE(one.at("d").at("next").is_null());
}

TEST(ProtocolEncode, HistoryNextCursorFeedsTheNextRequest) {
  for (const auto dir : {history_direction::older, history_direction::newer}) {
    const auto obj = parsed(encode_history_ok(1, "general", {sample_message()}, make_cursor(dir, 42)));
    const std::string next = str(obj.at("d").at("next"));
    const request req = decoded(R"({"op":"history","id":2,"room":"general","cursor":")" + next + "\"}");
    ASSERT_TRUE(std::holds_alternative<history_op>(req.op));
    EXPECT_EQ(std::get<history_op>(req.op).dir, dir) << next;
    EXPECT_EQ(std::get<history_op>(req.op).from, 42u) << next;
  }
}

TEST(ProtocolEncode, HistoryOkEscapesText) {
  std::string nasty = "a\"b\\c\nd\x01 \xC3\xA9 \xFF";
  chat_message msg{nasty, "ignored", 1, nasty, nasty, 0, "c\n"};
  const std::string out = encode_history_ok(1, "general", {msg}, std::string("o:1\n"));
  EXPECT_EQ(out.find('\n'), std::string::npos) << out;
  const auto obj = parsed(out);
  const auto& m = obj.at("d").at("messages").at(0).as_object();
  const std::string clean = "a\"b\\c\nd\x01 \xC3\xA9 \xEF\xBF\xBD";  // the invalid byte becomes U+FFFD
  EXPECT_EQ(str(m.at("id")), clean);
  EXPECT_EQ(str(m.at("user")), clean);
  EXPECT_EQ(str(m.at("text")), clean);
  EXPECT_EQ(str(m.at("client_msg_id")), "c\n");
  EXPECT_EQ(str(obj.at("d").at("next")), "o:1\n");
}

TEST(ProtocolEncode, EmptyOk) {
  EXPECT_EQ(encode_empty_ok(4), R"({"re":4,"ok":true,"d":{}})");
  const auto obj = parsed(encode_empty_ok(4));
  EXPECT_EQ(obj.at("re").as_int64(), 4);
  EXPECT_TRUE(obj.at("ok").as_bool());
  EXPECT_TRUE(obj.at("d").as_object().empty());
}

TEST(ProtocolEncode, Pong) {
  const auto obj = parsed(encode_pong(9, 0));
  EXPECT_EQ(obj.at("re").as_int64(), 9);
  EXPECT_TRUE(obj.at("ok").as_bool());
  EXPECT_EQ(str(obj.at("d").at("ts")), "1970-01-01T00:00:00.000Z");
}

TEST(ProtocolEncode, ErrorReply) {
  const std::string out = encode_error_reply(7, error_code::not_joined, "join the room first");
  EXPECT_EQ(out, R"({"re":7,"ok":false,"error":{"code":"not_joined","message":"join the room first"}})");
  const auto obj = parsed(out);
  EXPECT_EQ(obj.at("re").as_int64(), 7);
  EXPECT_FALSE(obj.at("ok").as_bool());
  EXPECT_FALSE(obj.contains("d"));
  const auto& e = obj.at("error").as_object();
  EXPECT_EQ(str(e.at("code")), "not_joined");
  EXPECT_EQ(str(e.at("message")), "join the room first");
  EXPECT_FALSE(e.contains("retry_after_ms"));
}

TEST(ProtocolEncode, ErrorReplyWithRetry) {
  const auto obj = parsed(encode_error_reply(8, error_code::rate_limited, "slow down", 250u));
  const auto& e = obj.at("error").as_object();
  EXPECT_EQ(str(e.at("code")), "rate_limited");
  EXPECT_EQ(e.at("retry_after_ms").as_int64(), 250);
}

TEST(ProtocolEncode, ErrorEvent) {
  const std::string out = encode_error_event(error_code::malformed_json, "frame is not valid JSON");
  EXPECT_EQ(out, R"({"ev":"error","error":{"code":"malformed_json","message":"frame is not valid JSON"}})");
  const auto obj = parsed(out);
  EXPECT_EQ(str(obj.at("ev")), "error");
  EXPECT_FALSE(obj.contains("re"));
  EXPECT_EQ(str(obj.at("error").at("code")), "malformed_json");

  const auto retry = parsed(encode_error_event(error_code::unavailable, "try later", 1000u));
  EXPECT_EQ(retry.at("error").at("retry_after_ms").as_int64(), 1000);
}

TEST(ProtocolEncode, ErrorCodesAllRoundTrip) {
  for (int i = 0; i <= static_cast<int>(error_code::internal); ++i) {
    const auto code = static_cast<error_code>(i);
    const auto obj = parsed(encode_error_reply(i, code, "m"));
    EXPECT_EQ(str(obj.at("error").at("code")), to_string(code));
  }
}

TEST(ProtocolEncode, MessageEvent) {
  const std::string out = encode_message_event(sample_message());
  EXPECT_EQ(out, R"({"ev":"message","room":"general","seq":42,"d":{"id":"m-01H","user":"alice","text":"hi",)"
                 R"("ts":"2026-11-22T03:04:05.123Z","client_msg_id":"c-123"}})");
  const auto obj = parsed(out);
  EXPECT_EQ(str(obj.at("ev")), "message");
  EXPECT_EQ(str(obj.at("room")), "general");
  EXPECT_EQ(obj.at("seq").as_int64(), 42);
  const auto& d = obj.at("d").as_object();
  EXPECT_EQ(str(d.at("id")), "m-01H");
  EXPECT_EQ(str(d.at("user")), "alice");
  EXPECT_EQ(str(d.at("text")), "hi");
  EXPECT_EQ(str(d.at("ts")), "2026-11-22T03:04:05.123Z");
  EXPECT_EQ(str(d.at("client_msg_id")), "c-123");
}

TEST(ProtocolEncode, MessageEventOmitsEmptyClientMsgId) {
  chat_message msg = sample_message();
  msg.client_msg_id.clear();
  const auto obj = parsed(encode_message_event(msg));
  EXPECT_FALSE(obj.at("d").as_object().contains("client_msg_id"));
  EXPECT_EQ(obj.at("d").as_object().size(), 4u);
}

TEST(ProtocolEncode, JoinOkInACrowdedRoom) {
  // The first members by user id, the full count, and no per-user events to expect.
  const std::vector<member_info> first{{"ann", true}, {"bob", true}};
  const auto obj = parsed(encode_join_ok(5, "lobby", 9, {first, 5000, false}, 0, true));
  const auto& d = obj.at("d").as_object();
  EXPECT_EQ(d.at("member_count").as_int64(), 5000);
  EXPECT_FALSE(d.at("member_events").as_bool());
  ASSERT_EQ(d.at("members").as_array().size(), 2u);
  EXPECT_EQ(str(d.at("members").at(1).at("user")), "bob");
}

TEST(ProtocolEncode, MemberCountAndMembersEvents) {
  EXPECT_EQ(encode_member_count("lobby", 1234), R"({"ev":"member_count","room":"lobby","d":{"count":1234}})");
  const std::vector<member_info> two{{"ann", true}, {"bob", true}};
  const std::string out = encode_members_event("lobby", two);
  EXPECT_EQ(out, R"({"ev":"members","room":"lobby","d":{"members":[{"user":"ann","online":true},)"
                 R"({"user":"bob","online":true}]}})");
  EXPECT_EQ(parsed(out).at("d").at("members").as_array().size(), 2u);
  EXPECT_TRUE(parsed(encode_members_event("lobby", {})).at("d").at("members").as_array().empty());
}

TEST(ProtocolEncode, MemberAndTypingEvents) {
  const struct {
    std::string out;
    const char* ev;
  } cases[] = {{encode_member_joined("general", "bob"), "member_joined"},
               {encode_member_left("general", "bob"), "member_left"},
               {encode_typing("general", "bob"), "typing"}};
  for (const auto& c : cases) {
    EXPECT_EQ(c.out, std::string(R"({"ev":")") + c.ev + R"(","room":"general","d":{"user":"bob"}})");
    const auto obj = parsed(c.out);
    EXPECT_EQ(obj.size(), 3u);
    EXPECT_EQ(str(obj.at("ev")), c.ev);
    EXPECT_EQ(str(obj.at("room")), "general");
    EXPECT_EQ(obj.at("d").as_object().size(), 1u);
    EXPECT_EQ(str(obj.at("d").at("user")), "bob");
  }
}

TEST(ProtocolEncode, RoomManagementEvents) {
  EXPECT_EQ(encode_member_updated("general", "bob", "moderator"),
            R"({"ev":"member_updated","room":"general","d":{"user":"bob","role":"moderator"}})");
  EXPECT_EQ(encode_room_deleted("general"), R"({"ev":"room_deleted","room":"general","d":{}})");
  const auto updated = parsed(encode_room_updated("general", R"({"id":"general","name":"Gen \"eral\""})"));
  EXPECT_EQ(str(updated.at("ev")), "room_updated");
  EXPECT_EQ(str(updated.at("d").at("name")), "Gen \"eral\"");
  // Escaping of the user and role strings, as for every event.
  const auto odd = parsed(encode_member_updated("general", "a\"b\n", "member"));
  EXPECT_EQ(str(odd.at("d").at("user")), "a\"b\n");
}

TEST(ProtocolEncode, Presence) {
  EXPECT_EQ(encode_presence("bob", presence_status::online),
            R"({"ev":"presence","d":{"user":"bob","status":"online"}})");
  const auto online = parsed(encode_presence("bob", presence_status::online));
  EXPECT_EQ(str(online.at("ev")), "presence");
  EXPECT_FALSE(online.contains("room"));
  EXPECT_EQ(str(online.at("d").at("user")), "bob");
  EXPECT_EQ(str(online.at("d").at("status")), "online");
  const auto offline = parsed(encode_presence("bob", presence_status::offline));
  EXPECT_EQ(str(offline.at("d").at("status")), "offline");
}

TEST(ProtocolEncode, NodesListsWhereAClientMayReconnect) {
  EXPECT_EQ(encode_nodes({{"n1", "10.0.0.1", 8080}, {"n2", "::1", 9000}}),
            R"({"ev":"nodes","d":{"nodes":[{"id":"n1","url":"ws://10.0.0.1:8080/ws"},)"
            R"({"id":"n2","url":"ws://[::1]:9000/ws"}]}})");
  const auto none = parsed(encode_nodes({}));
  EXPECT_EQ(str(none.at("ev")), "nodes");
  EXPECT_TRUE(none.at("d").at("nodes").as_array().empty());
}

// ---- escaping ----

TEST(ProtocolEscape, SpecialCharactersRoundTrip) {
  std::string nasty = "quote\" backslash\\ slash/ nl\n cr\r tab\t bs\b ff\f nul";
  nasty.push_back('\0');
  nasty += " x01\x01 x1f\x1f del\x7f \xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80 \xE2\x80\xA8";
  chat_message msg = sample_message();
  msg.text = nasty;
  msg.user = nasty;
  msg.client_msg_id = "id\"\n";
  const std::string out = encode_message_event(msg);
  const auto obj = parsed(out);
  EXPECT_EQ(str(obj.at("d").at("text")), nasty);
  EXPECT_EQ(str(obj.at("d").at("user")), nasty);
  EXPECT_EQ(str(obj.at("d").at("client_msg_id")), "id\"\n");
  EXPECT_NE(out.find(R"(quote\" backslash\\ slash/ nl\u000a cr\u000d tab\u0009)"), std::string::npos) << out;
  EXPECT_NE(out.find(R"(nul\u0000 x01\u0001 x1f\u001f)"), std::string::npos) << out;
  // Valid UTF-8 passes through untouched rather than as \u escapes.
  EXPECT_NE(out.find("\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80"), std::string::npos);
}

TEST(ProtocolEscape, InvalidUtf8BecomesReplacementCharacter) {
  const std::string bad[] = {
      "\xFF", "\xC3", "a\x80z", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE4\xB8", "\xF0\x9F\x98"};
  for (const auto& s : bad) {
    const std::string out = encode_typing("r", s);
    const auto obj = parsed(out);  // Boost.JSON rejects invalid UTF-8, so parsing proves the output is clean.
    EXPECT_NE(str(obj.at("d").at("user")).find("\xEF\xBF\xBD"), std::string::npos) << out;
  }
  EXPECT_EQ(str(parsed(encode_typing("r", "a\xFFz")).at("d").at("user")), "a\xEF\xBF\xBDz");
}

TEST(ProtocolEscape, NoEncoderEmitsANewline) {
  const std::string nl = "line1\nline2\r\n";
  chat_message msg{nl, "general", 1, nl, nl, 0, nl};
  const std::vector<member_info> two_named_nl{{nl, true}, {nl, false}};
  const std::string outputs[] = {
      encode_hello(hello_event{nl, 1, limits_info{1, 2, 3, 4, 5, 6}}),
      encode_auth_ok(1, nl),
      encode_join_ok(1, nl, 1, {two_named_nl, 2, false}, 1, false),
      encode_members_event(nl, two_named_nl),
      encode_members_ok(1, nl, 2, two_named_nl, true),
      encode_member_count(nl, 3),
      encode_history_ok(1, nl, {msg, msg}, nl),
      encode_history_ok(1, nl, {}, std::nullopt),
      encode_leave_ok(1, nl),
      encode_send_ok(1, msg),
      encode_empty_ok(1),
      encode_pong(1, 1),
      encode_error_reply(1, error_code::internal, nl, 5u),
      encode_error_event(error_code::internal, nl, 5u),
      encode_message_event(msg),
      encode_member_joined(nl, nl),
      encode_member_left(nl, nl),
      encode_typing(nl, nl),
      encode_presence(nl, presence_status::offline),
      encode_nodes({{nl, nl, 1}}),
  };
  for (const auto& out : outputs) {
    EXPECT_EQ(out.find('\n'), std::string::npos) << out;
    EXPECT_EQ(out.find('\r'), std::string::npos) << out;
    parsed(out);
  }
}

TEST(ProtocolEscape, DecodedTextReencodesIdentically) {
  const request req = decoded(send_frame(R"("a\"b\\c\nd\u0001e\u00e9\ud83d\ude00")"));
  chat_message msg = sample_message();
  msg.text = std::get<send_op>(req.op).text;
  EXPECT_EQ(str(parsed(encode_message_event(msg)).at("d").at("text")), msg.text);
}

// ---- timestamps ----

TEST(ProtocolTimestamp, KnownValues) {
  EXPECT_EQ(format_timestamp(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_timestamp(1), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(format_timestamp(999), "1970-01-01T00:00:00.999Z");
  EXPECT_EQ(format_timestamp(1000), "1970-01-01T00:00:01.000Z");
  EXPECT_EQ(format_timestamp(86'399'999), "1970-01-01T23:59:59.999Z");
  EXPECT_EQ(format_timestamp(946'684'800'000), "2000-01-01T00:00:00.000Z");
  EXPECT_EQ(format_timestamp(1'709'208'000'000), "2024-02-29T12:00:00.000Z");
  EXPECT_EQ(format_timestamp(1'795'316'645'123), "2026-11-22T03:04:05.123Z");
  EXPECT_EQ(format_timestamp(2'147'483'648'000), "2038-01-19T03:14:08.000Z");
}

TEST(ProtocolTimestamp, BeforeTheEpoch) {
  EXPECT_EQ(format_timestamp(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_timestamp(-1000), "1969-12-31T23:59:59.000Z");
  EXPECT_EQ(format_timestamp(-86'400'000), "1969-12-31T00:00:00.000Z");
}

TEST(ProtocolTimestamp, ClampedToFourDigitYears) {
  EXPECT_EQ(format_timestamp(std::numeric_limits<std::int64_t>::min()), "0000-01-01T00:00:00.000Z");
  EXPECT_EQ(format_timestamp(std::numeric_limits<std::int64_t>::max()), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(format_timestamp(253'402'300'799'999), "9999-12-31T23:59:59.999Z");
}

TEST(ProtocolDecode, TextWithNulIsInvalid) {
  auto r = decode_request(R"({"op":"send","id":3,"room":"general","text":"a\u0000b"})", decode_limits{});
  auto* err = std::get_if<decode_error>(&r);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, error_code::invalid_text);
  EXPECT_EQ(err->id, 3);
}

}  // namespace
}  // namespace chorus::protocol
