// What one chorus-bench run does: the command line, the named presets and the checks between them.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace chorus::bench {

/// A `ws://host:port/path` target; only plain WebSocket (the generator talks to loopback nodes).
struct target_url {
  std::string host;
  std::string port;
  std::string path;
  std::string text;  ///< as given, for the report
};

/// Every setting of a run. A preset (`--scenario NAME`) fills these first; explicit flags override it,
/// whatever their order on the command line.
struct scenario {
  std::string name = "custom";
  std::vector<target_url> urls;
  bool url_by_room = false;          ///< connections go to URLs by room, not round-robin (see url_of)
  std::string secret;                ///< the node's development jwt_secret, to mint tokens
  std::uint32_t connections = 1000;  ///< 0 = as many as the open-files limit allows
  std::uint32_t rooms = 10;
  std::uint32_t members_per_room = 100;
  std::uint32_t senders = 100;        ///< connections that send, spread over the rooms
  double rate = 1000;                 ///< messages per second offered in total
  double duration_s = 10;             ///< the measured window
  double warmup_s = 2;                ///< sending before the window; not measured
  double drain_s = 3;                 ///< longest wait after the window for deliveries in flight
  std::uint32_t message_bytes = 100;  ///< text length of each message
  /// 0: each message goes out as it is issued, through Beast. More: each connection writes the messages
  /// issued to it once every this many ms, in one TCP write; the connections take turns, so that their
  /// writes spread evenly over the interval (see client_connection::hold).
  std::uint32_t write_tick_ms = 0;
  bool ramp = false;
  double ramp_factor = 1.5;                 ///< each step offers this many times the previous rate
  double ramp_max_rate = 1e6;               ///< messages per second at which a ramp stops anyway
  double p99_bound_ms = 100;                ///< a ramp step fails when delivery p99 exceeds this
  double min_delivery_ratio = 0.999;        ///< ... or when fewer than this fraction were delivered
  double churn_rate = 0;                    ///< new short-lived connections per second (churn)
  std::uint32_t churn_concurrency = 256;    ///< churn connections in flight at once
  std::uint32_t connect_concurrency = 256;  ///< connection attempts in flight while connecting
  double connect_timeout_s = 60;            ///< the whole connect (and join) phase
  std::vector<int> server_pids;             ///< nodes whose CPU to report; the first one's VmRSS too (idle)
  bool json = false;                        ///< print only the JSON line
  std::string room_prefix;                  ///< random unless given, so that runs against one node do not mix

  int memory_pid() const { return server_pids.empty() ? 0 : server_pids.front(); }

  bool chatting() const { return senders > 0 && rate > 0 && rooms > 0 && members_per_room > 0; }

  /// The index of the URL connection `c` goes through: c mod urls, or with url_by_room (where every
  /// connection is in exactly one room) the index of its room mod urls, so that a room's members share a
  /// node.
  std::size_t url_of(std::uint64_t c) const {
    if (url_by_room && members_per_room > 0) return (c / members_per_room) % urls.size();
    return c % urls.size();
  }
};

/// Parsed command line, or a message for the user (exit status 2), or the help text (exit status 0).
struct parse_error {
  std::string message;
};
struct help_requested {
  std::string text;
};
using parse_result = std::variant<scenario, parse_error, help_requested>;

parse_result parse_command_line(int argc, const char* const* argv);

/// Names of the presets, for help and errors.
std::vector<std::string> preset_names();

}  // namespace chorus::bench
