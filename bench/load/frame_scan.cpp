// The fast path of the generator's receive side: substring searches over the server's known line layout.
#include "bench/load/frame_scan.hpp"

namespace chorus::bench {
namespace {

constexpr std::string_view kMessagePrefix = R"({"ev":"message")";
constexpr std::string_view kReplyPrefix = R"({"re":)";
constexpr std::string_view kEventPrefix = R"({"ev":")";
constexpr std::string_view kRoomKey = R"("room":")";
constexpr std::string_view kSeqKey = R"("seq":)";
constexpr std::string_view kTextKey = R"("text":")";
constexpr std::string_view kUserKey = R"("user":")";
constexpr std::string_view kOkTrue = R"("ok":true)";
constexpr std::string_view kOkFalse = R"("ok":false)";
constexpr std::string_view kClientMsgIdKey = R"("client_msg_id":")";

bool scan_message(std::string_view line, std::string_view room_prefix, scanned_line& out) {
  auto rest = line.substr(kMessagePrefix.size());
  auto at = rest.find(kRoomKey);
  if (at == std::string_view::npos) return false;
  rest.remove_prefix(at + kRoomKey.size());
  if (rest.substr(0, room_prefix.size()) != room_prefix) {
    // A room the generator did not make (e.g. a churn room): nothing to measure, but still a message.
    out.room_index = UINT64_MAX;
  } else {
    rest.remove_prefix(room_prefix.size());
    auto used = parse_digits(rest, out.room_index);
    if (used == 0 || used >= rest.size() || rest[used] != '"') return false;
    rest.remove_prefix(used);
  }
  at = rest.find(kSeqKey);
  if (at == std::string_view::npos) return false;
  rest.remove_prefix(at + kSeqKey.size());
  auto used = parse_digits(rest, out.seq);
  if (used == 0) return false;
  rest.remove_prefix(used);
  at = rest.find(kTextKey);
  if (at == std::string_view::npos) return false;
  // The author comes before the text; a quote inside a JSON string is escaped, so the key cannot be text.
  if (const auto user = rest.substr(0, at).find(kUserKey); user != std::string_view::npos) {
    auto name = rest.substr(user + kUserKey.size());
    if (name.starts_with(kUserPrefix)) {
      name.remove_prefix(kUserPrefix.size());
      std::uint64_t index = 0;
      const auto digits = parse_digits(name, index);
      if (digits > 0 && digits < name.size() && name[digits] == '"') out.sender = index;
    }
  }
  rest.remove_prefix(at + kTextKey.size());
  if (rest.substr(0, kStampMarker.size()) == kStampMarker) {
    rest.remove_prefix(kStampMarker.size());
    used = parse_digits(rest, out.stamp_ns);
    out.stamped = used > 0 && used < rest.size() && rest[used] == ';';
  }
  out.kind = line_kind::message;
  return true;
}

void scan_reply(std::string_view line, scanned_line& out) {
  auto rest = line.substr(kReplyPrefix.size());
  bool negative = !rest.empty() && rest.front() == '-';
  if (negative) rest.remove_prefix(1);
  std::uint64_t re = 0;
  const auto used = parse_digits(rest, re);
  if (used == 0) return;
  out.re = negative ? -static_cast<std::int64_t>(re) : static_cast<std::int64_t>(re);
  rest.remove_prefix(used);
  if (rest.starts_with(",")) rest.remove_prefix(1);
  if (rest.starts_with(kOkFalse)) {
    out.kind = line_kind::failure;
    return;
  }
  if (!rest.starts_with(kOkTrue)) return;
  // The stamp echoed in client_msg_id sits near the end of a send reply; search from there.
  const auto at = line.rfind(kClientMsgIdKey);
  if (at != std::string_view::npos) {
    auto id = line.substr(at + kClientMsgIdKey.size());
    const auto digits = parse_digits(id, out.stamp_ns);
    out.stamped = digits > 0 && digits < id.size() && id[digits] == '"';
  }
  out.kind = out.stamped ? line_kind::send_ack : line_kind::other_ok;
}

}  // namespace

std::size_t parse_digits(std::string_view s, std::uint64_t& out) {
  std::uint64_t v = 0;
  std::size_t i = 0;
  // 19 digits always fit in 64 bits; longer numbers are not ours.
  for (; i < s.size() && i < 19 && s[i] >= '0' && s[i] <= '9'; ++i)
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  if (i < s.size() && s[i] >= '0' && s[i] <= '9') return 0;
  out = v;
  return i;
}

scanned_line scan_line(std::string_view line, std::string_view room_prefix) {
  scanned_line out;
  if (line.starts_with(kMessagePrefix)) {
    if (!scan_message(line, room_prefix, out)) out = scanned_line{};
    return out;
  }
  if (line.starts_with(kReplyPrefix)) {
    scan_reply(line, out);
    return out;
  }
  if (line.starts_with(kEventPrefix)) {
    const auto name = line.substr(kEventPrefix.size());
    if (name.starts_with(R"(error")")) {
      out.kind = line_kind::failure;
    } else {
      out.kind = line_kind::ignorable;
    }
  }
  return out;
}

}  // namespace chorus::bench
