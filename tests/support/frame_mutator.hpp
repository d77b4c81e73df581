// Broken variants of valid JSON requests (WebSocket frames, HTTP bodies), for tests that feed a decoder or a
// node what a buggy or hostile client might send: byte-level damage, and fields with the wrong values.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

namespace chorus::test {

using rng = std::mt19937_64;

inline std::size_t pick(rng& gen, std::size_t n) {
  return std::uniform_int_distribution<std::size_t>(0, n - 1)(gen);
}

// Values a field may be given instead of its own: right and wrong types, edges of every range, text that
// is long, blank, control characters, escapes and non-ASCII.
inline const std::vector<boost::json::value> palette = [] {
  std::vector<boost::json::value> v;
  for (auto number : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}, std::int64_t{20}, std::int64_t{100},
                      std::int64_t{101}, std::int64_t{1000}, std::int64_t{1001},
                      std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()})
    v.emplace_back(number);
  v.emplace_back(std::numeric_limits<std::uint64_t>::max());
  for (double real : {1.5, -0.0, 1e300}) v.emplace_back(real);
  v.emplace_back(nullptr);
  v.emplace_back(true);
  for (std::string_view text : {"",        " ",
                                "general", "General",
                                "-room",   "a\tb",
                                "hi",      "\xC3\xA9t\xC3\xA9",
                                "o:5",     "n:0",
                                "o:05",    "x:1",
                                "ping",    "send",
                                "history", "member",
                                "owner",   "away",
                                "group",   "channel",
                                "x@y.z",   "https://example.com/a.png"})
    v.emplace_back(boost::json::string(text));
  v.emplace_back(boost::json::string(std::string_view("nul\0inside", 10)));
  v.emplace_back(boost::json::string(std::string(64, 'r')));
  v.emplace_back(boost::json::string(std::string(65, 'r')));
  v.emplace_back(boost::json::string(std::string(4000, 'x')));
  v.emplace_back(boost::json::string(std::string(4001, 'x')));
  v.emplace_back(boost::json::string(std::string(2000, '\x7f')));
  v.emplace_back(boost::json::array{1, "two", nullptr});
  v.emplace_back(boost::json::array{"edit_room", "delete_messages"});
  v.emplace_back(boost::json::object{{"op", "ping"}});
  return v;
}();

/// The fields of the WebSocket protocol's requests.
inline constexpr std::array<std::string_view, 10> protocol_fields = {
    "op", "id", "room", "text", "token", "after", "before", "cursor", "limit", "last_seq"};

// Bytes that matter to a JSON parser, and some that must be rejected inside strings.
inline constexpr std::string_view interesting_bytes =
    "{}[]\":,\\ \t\n0123456789-+.eEtrufalsn\x01\x7f\xc3\xa9\xff";

using rng = std::mt19937_64;

/// One byte-level change: replace, insert, delete or duplicate a run, or cut the frame short.
inline std::string mutate_bytes(std::string frame, rng& gen) {
  const std::size_t changes = 1 + pick(gen, 3);
  for (std::size_t c = 0; c < changes; ++c) {
    const std::size_t at = frame.empty() ? 0 : pick(gen, frame.size());
    switch (pick(gen, 5)) {
      case 0:
        if (!frame.empty()) frame[at] = interesting_bytes[pick(gen, interesting_bytes.size())];
        break;
      case 1:
        frame.insert(frame.begin() + static_cast<std::ptrdiff_t>(at),
                     interesting_bytes[pick(gen, interesting_bytes.size())]);
        break;
      case 2:
        frame.erase(at, 1 + pick(gen, 8));
        break;
      case 3:
        frame.insert(at, frame.substr(at, 1 + pick(gen, 8)));
        break;
      default:
        frame.resize(at);
        break;
    }
  }
  return frame;
}

/// One structural change that keeps the frame valid JSON: a field gets a palette value, is removed, or
/// is added; sometimes the whole frame becomes another JSON value.
inline std::string mutate_fields(const std::string& frame, rng& gen,
                                 std::span<const std::string_view> field_names = protocol_fields) {
  boost::json::value doc = boost::json::parse(frame);
  auto& obj = doc.as_object();
  const std::size_t changes = 1 + pick(gen, 2);
  for (std::size_t c = 0; c < changes; ++c) {
    const std::string_view key = field_names[pick(gen, field_names.size())];
    switch (pick(gen, 8)) {
      case 0:
        obj.erase(key);
        break;
      case 1:
        return boost::json::serialize(palette[pick(gen, palette.size())]);
      default:
        obj[key] = palette[pick(gen, palette.size())];
        break;
    }
  }
  return boost::json::serialize(doc);
}

/// True when `s` is UTF-8 as RFC 3629 has it: what a WebSocket text frame must be, or the server closes
/// the connection (1007) before any decoder sees it.
inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    std::uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::array<std::uint32_t, 5> min_of_len = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_of_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace chorus::test
