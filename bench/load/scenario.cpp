// Command-line parsing for chorus-bench: presets first, then flags, then validation with a named culprit.
#include "bench/load/scenario.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string_view>

namespace chorus::bench {
namespace {

constexpr std::string_view kUsage =
    R"(chorus-bench: WebSocket load generator for Chorus (and anything speaking its join/send subset).

usage: chorus-bench --secret SECRET [--scenario NAME] [options]

  --url URL                ws://HOST:PORT/PATH of a node; repeat for several (connections go round-robin)
                           default ws://127.0.0.1:8080/ws
  --url-by connection|room round-robin over the URLs by connection (default) or by room: all members of
                           room r on URL r mod URLs (needs connections = rooms x members-per-room)
  --secret S               the node's jwt_secret (dev tokens are minted with it); or CHORUS_JWT_SECRET
  --scenario NAME          preset: fanout, big-room, dm, durable, idle, churn (flags given too override it)
                           (durable: the dm shape at 50,000 msg/s, issue 4's target; 5 s after 1 s warm-up)
  --connections N          WebSocket connections (0 = as many as the open-files limit allows)
  --rooms N                rooms, named PREFIX0..PREFIX(N-1)
  --members-per-room N     connections per room; member slots go round-robin over the connections
  --senders N              connections that send; each sends to one room, spread evenly over the rooms
  --rate R                 messages per second offered in total (each is delivered to every member)
  --duration S             measured window, seconds
  --warmup S               sending before the window, seconds (not measured)
  --drain S                longest wait for in-flight deliveries after the window, seconds
  --message-bytes N        text length of each message (at least 32)
  --write-tick-ms N        each connection writes the messages it has every N ms (1 to 1000), in one TCP
                           write, as a client that batches its writes does; the connections take turns, so
                           writes spread over the N ms. Default 0: each message written on its own
  --ramp                   multiply the rate by --ramp-factor per step until delivery ratio < --min-ratio
                           or p99 > --p99-bound-ms; report every step and the highest that held
  --ramp-factor F          default 1.5
  --ramp-max-rate R        stop the ramp at this offered rate, default 1000000
  --p99-bound-ms MS        default 100
  --min-ratio F            default 0.999
  --churn-rate R           new connections per second, each upgrading, joining one room and closing
  --churn-concurrency N    churn connections in flight at once, default 256 (more only queues in SYN backlogs)
  --connect-concurrency N  connection attempts in flight while connecting, default 256
  --connect-timeout S      limit for connecting and joining, default 60
  --server-pid PID         report this process's CPU and VmRSS (and per connection, for idle); repeat for
                           the nodes of a cluster: CPU per node and in sum, VmRSS of the first
  --room-prefix P          name the rooms P0..P(N-1) (default: a random prefix per run)
  --json                   print only the JSON line (no summary, no progress)
  --help

Latency is measured from each message's scheduled send time (so a stalled generator shows up as latency,
not as missing samples) to its arrival at each receiver; both ends are in this process. With several --url,
delivery latency is also split by whether the receiver is connected through the sender's URL or another one.
)";

struct preset {
  std::string_view name;
  std::function<void(scenario&)> apply;
};

const std::vector<preset>& presets() {
  static const std::vector<preset> all = {
      {"fanout",
       [](scenario& s) {
         s.connections = 1000, s.rooms = 10, s.members_per_room = 100, s.senders = 100, s.rate = 1000;
       }},
      {"big-room",
       [](scenario& s) {
         s.connections = 5000, s.rooms = 1, s.members_per_room = 5000, s.senders = 10, s.rate = 20;
       }},
      {"dm",
       [](scenario& s) {
         s.connections = 5000, s.rooms = 2500, s.members_per_room = 2, s.senders = 5000, s.rate = 5000;
       }},
      // Issue 4's durable-send target: the dm shape (every send acknowledged only after its commit) at
      // 50,000 messages/s; judge it by ack p99 (target <= 25 ms).
      {"durable",
       [](scenario& s) {
         s.connections = 5000, s.rooms = 2500, s.members_per_room = 2, s.senders = 5000, s.rate = 50000,
         s.duration_s = 5, s.warmup_s = 1, s.p99_bound_ms = 25;
       }},
      {"idle",
       [](scenario& s) {
         s.connections = 0, s.rooms = 0, s.members_per_room = 0, s.senders = 0, s.rate = 0, s.duration_s = 5,
         s.warmup_s = 0;
       }},
      {"churn",
       [](scenario& s) {
         s.connections = 1000, s.rooms = 10, s.members_per_room = 100, s.senders = 100, s.rate = 500,
         s.churn_rate = 5000;
       }},
  };
  return all;
}

template <class T>
bool parse_number(std::string_view text, T& out) {
  if constexpr (std::is_floating_point_v<T>) {
    // std::from_chars for double is in libstdc++ 11+; strtod would also accept "inf" and hex.
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && p == text.data() + text.size() && out >= 0;
  } else {
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && p == text.data() + text.size();
  }
}

bool parse_url(std::string_view text, target_url& out) {
  constexpr std::string_view scheme = "ws://";
  if (!text.starts_with(scheme)) return false;
  auto rest = text.substr(scheme.size());
  const auto slash = rest.find('/');
  const auto authority = rest.substr(0, slash);
  out.path = slash == std::string_view::npos ? "/ws" : std::string(rest.substr(slash));
  const auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    out.host = std::string(authority);
    out.port = "80";
  } else {
    out.host = std::string(authority.substr(0, colon));
    out.port = std::string(authority.substr(colon + 1));
  }
  out.text = std::string(text);
  unsigned port = 0;
  return !out.host.empty() && parse_number(std::string_view(out.port), port) && port > 0 && port < 65536;
}

std::string random_prefix() {
  std::random_device rd;
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string p = "b";
  for (int i = 0; i < 5; ++i) p += digits[rd() % 36];
  return p + "-";
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& p : presets()) names.emplace_back(p.name);
  return names;
}

parse_result parse_command_line(int argc, const char* const* argv) {
  scenario s;
  std::vector<std::pair<std::string, std::string>> flags;  // in order, after splitting --key=value
  static const std::map<std::string, bool, std::less<>> takes_value = {
      {"url", true},
      {"url-by", true},
      {"secret", true},
      {"scenario", true},
      {"connections", true},
      {"rooms", true},
      {"members-per-room", true},
      {"senders", true},
      {"rate", true},
      {"duration", true},
      {"warmup", true},
      {"drain", true},
      {"message-bytes", true},
      {"write-tick-ms", true},
      {"ramp", false},
      {"ramp-factor", true},
      {"ramp-max-rate", true},
      {"p99-bound-ms", true},
      {"min-ratio", true},
      {"churn-rate", true},
      {"churn-concurrency", true},
      {"connect-concurrency", true},
      {"connect-timeout", true},
      {"server-pid", true},
      {"room-prefix", true},
      {"json", false},
      {"help", false},
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!arg.starts_with("--")) return parse_error{"unexpected argument '" + std::string(arg) + "'"};
    arg.remove_prefix(2);
    std::string key(arg.substr(0, arg.find('=')));
    const auto it = takes_value.find(key);
    if (it == takes_value.end()) return parse_error{"unknown option --" + key};
    std::string value;
    if (arg.find('=') != std::string_view::npos) {
      value = std::string(arg.substr(arg.find('=') + 1));
    } else if (it->second) {
      if (i + 1 >= argc) return parse_error{"--" + key + " needs a value"};
      value = argv[++i];
    }
    flags.emplace_back(std::move(key), std::move(value));
  }

  for (const auto& [key, value] : flags) {
    if (key == "help") return help_requested{std::string(kUsage)};
    if (key != "scenario") continue;
    bool found = false;
    for (const auto& p : presets()) {
      if (p.name == value) {
        p.apply(s);
        s.name = value;
        found = true;
      }
    }
    if (!found) {
      std::string names;
      for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
      return parse_error{"--scenario: unknown preset '" + value + "' (one of: " + names + ")"};
    }
  }

  bool urls_given = false;
  for (const auto& [key, value] : flags) {
    auto bad = [&] { return parse_error{"--" + key + ": bad value '" + value + "'"}; };
    bool ok = true;
    if (key == "scenario") continue;
    if (key == "url") {
      target_url u;
      if (!parse_url(value, u))
        return parse_error{"--url: expected ws://HOST:PORT/PATH, got '" + value + "'"};
      if (!urls_given) s.urls.clear();
      urls_given = true;
      s.urls.push_back(std::move(u));
    } else if (key == "url-by") {
      ok = value == "connection" || value == "room";
      s.url_by_room = value == "room";
    } else if (key == "secret") {
      s.secret = value;
    } else if (key == "connections") {
      ok = parse_number(std::string_view(value), s.connections);
    } else if (key == "rooms") {
      ok = parse_number(std::string_view(value), s.rooms);
    } else if (key == "members-per-room") {
      ok = parse_number(std::string_view(value), s.members_per_room);
    } else if (key == "senders") {
      ok = parse_number(std::string_view(value), s.senders);
    } else if (key == "rate") {
      ok = parse_number(std::string_view(value), s.rate);
    } else if (key == "duration") {
      ok = parse_number(std::string_view(value), s.duration_s) && s.duration_s > 0;
    } else if (key == "warmup") {
      ok = parse_number(std::string_view(value), s.warmup_s);
    } else if (key == "drain") {
      ok = parse_number(std::string_view(value), s.drain_s);
    } else if (key == "message-bytes") {
      ok = parse_number(std::string_view(value), s.message_bytes) && s.message_bytes >= 32 &&
           s.message_bytes <= 60000;
    } else if (key == "write-tick-ms") {
      ok = parse_number(std::string_view(value), s.write_tick_ms) && s.write_tick_ms >= 1 &&
           s.write_tick_ms <= 1000;
    } else if (key == "ramp") {
      s.ramp = true;
    } else if (key == "ramp-factor") {
      ok = parse_number(std::string_view(value), s.ramp_factor) && s.ramp_factor > 1.0;
    } else if (key == "ramp-max-rate") {
      ok = parse_number(std::string_view(value), s.ramp_max_rate);
    } else if (key == "p99-bound-ms") {
      ok = parse_number(std::string_view(value), s.p99_bound_ms);
    } else if (key == "min-ratio") {
      ok = parse_number(std::string_view(value), s.min_delivery_ratio) && s.min_delivery_ratio <= 1.0;
    } else if (key == "churn-rate") {
      ok = parse_number(std::string_view(value), s.churn_rate);
    } else if (key == "churn-concurrency") {
      ok = parse_number(std::string_view(value), s.churn_concurrency) && s.churn_concurrency > 0;
    } else if (key == "connect-concurrency") {
      ok = parse_number(std::string_view(value), s.connect_concurrency) && s.connect_concurrency > 0;
    } else if (key == "connect-timeout") {
      ok = parse_number(std::string_view(value), s.connect_timeout_s) && s.connect_timeout_s > 0;
    } else if (key == "server-pid") {
      int pid = 0;
      ok = parse_number(std::string_view(value), pid) && pid > 0;
      s.server_pids.push_back(pid);
    } else if (key == "room-prefix") {
      // Room names go into JSON unescaped and are matched byte for byte in the server's lines.
      ok = !value.empty() && value.size() <= 64 && std::all_of(value.begin(), value.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.';
      });
      s.room_prefix = value;
    } else if (key == "json") {
      s.json = true;
    }
    if (!ok) return bad();
  }

  if (s.urls.empty()) {
    target_url u;
    parse_url("ws://127.0.0.1:8080/ws", u);
    s.urls.push_back(u);
  }
  if (s.secret.empty()) {
    if (const char* env = std::getenv("CHORUS_JWT_SECRET")) s.secret = env;
  }
  if (s.secret.empty())
    return parse_error{"--secret: required (the node's jwt_secret), or set CHORUS_JWT_SECRET"};
  const std::uint64_t slots = std::uint64_t{s.rooms} * s.members_per_room;
  if (s.senders > slots) {
    return parse_error{"--senders: " + std::to_string(s.senders) + " senders but only " +
                       std::to_string(slots) + " room members (--rooms x --members-per-room)"};
  }
  if (s.connections != 0 && s.members_per_room > s.connections) {
    return parse_error{
        "--members-per-room: larger than --connections; a room would hold one connection twice"};
  }
  if (s.ramp && !s.chatting()) return parse_error{"--ramp: needs senders, rooms and a rate"};
  if (s.url_by_room && s.connections != slots)
    return parse_error{"--url-by room: needs --connections equal to --rooms x --members-per-room"};
  if (s.room_prefix.empty()) s.room_prefix = random_prefix();
  return s;
}

}  // namespace chorus::bench
