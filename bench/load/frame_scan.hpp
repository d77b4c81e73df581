// Cheap classification of the server's JSON lines: finds seq, room and send stamp without parsing JSON.
#pragma once

#include <cstdint>
#include <string_view>

namespace chorus::bench {

/// What one line of a server frame is, as far as the generator cares.
enum class line_kind {
  message,    ///< a `message` event whose fields were found by the fast scan
  send_ack,   ///< a successful reply that echoes a stamped client_msg_id (a `send` reply)
  other_ok,   ///< another successful reply (join, leave, ping): rare, parse it properly
  failure,    ///< an error reply or an error event: rare, parse it properly for the code
  ignorable,  ///< hello, presence, membership and typing events
  unknown,    ///< not recognised by the scan (layout changed?): fall back to a real parser
};

struct scanned_line {
  line_kind kind = line_kind::unknown;
  std::int64_t re = -1;          ///< reply id for replies
  std::uint64_t room_index = 0;  ///< for messages: the number after the room prefix
  std::uint64_t seq = 0;         ///< for messages
  std::uint64_t stamp_ns =
      0;                 ///< send time embedded by the generator (text for messages, client_msg_id for acks)
  bool stamped = false;  ///< stamp_ns was found
  /// For messages: the connection index in the author's generated name (kUserPrefix + index); UINT64_MAX
  /// when the author is not one of the generator's users.
  std::uint64_t sender = UINT64_MAX;
};

/// The marker that starts every generated message text, followed by the send stamp and ';'.
inline constexpr std::string_view kStampMarker = "~T";

/// Generated users are named this followed by their connection's index ("u0", "u1", ...), so a receiver
/// knows which connection sent a message from its `user` field.
inline constexpr std::string_view kUserPrefix = "u";

/// Classifies `line` by substring search only. The server writes fields in a fixed order
/// (`{"ev":"message","room":"R","seq":N,"d":{...,"user":"U","text":"..."}}`), and the generator writes the
/// text, so a stamp is found by its marker; anything that does not fit is reported as `unknown`, never
/// guessed. A message without a `user` before its text is still a message, of an unknown sender.
/// `room_prefix` is what the generator puts before each room's index.
scanned_line scan_line(std::string_view line, std::string_view room_prefix);

/// Calls `f(line)` for every non-empty '\n'-separated line of a frame.
template <class F>
void for_each_line(std::string_view frame, F&& f) {
  while (!frame.empty()) {
    const auto nl = frame.find('\n');
    const auto line = frame.substr(0, nl);
    if (!line.empty()) f(line);
    if (nl == std::string_view::npos) break;
    frame.remove_prefix(nl + 1);
  }
}

/// Parses the decimal digits at the start of `s` into `out`; returns how many characters it used (0: none).
std::size_t parse_digits(std::string_view s, std::uint64_t& out);

}  // namespace chorus::bench
