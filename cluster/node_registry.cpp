// Node entries, stats, drain requests and announcements in Redis over storage::redis_connection: Lua
// scripts make "extend / delete only if still ours" and "drain only a live node" atomic, and the subscriber
// polls its socket so that a wait never breaks the connection (a hiredis read timeout would leave the context
// unusable).
#include "cluster/node_registry.hpp"
#include "storage/redis_connection.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_set>
#include <utility>

namespace chorus::cluster {
namespace {

using storage::redis_connection;
using storage::redis_reply_ptr;
using storage::redis_script;
using storage::text_of;

namespace json = boost::json;

// KEYS[1] our entry; ARGV: value, ttl ms, channel, "joined" message. Returns the value it replaced (or nil).
constexpr std::string_view register_script = R"lua(
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return old
)lua";

// KEYS[1] our entry; ARGV: our value, ttl ms. Returns 1 when extended, else what the key holds (nil:
// expired).
constexpr std::string_view heartbeat_script = R"lua(
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return v
)lua";

// KEYS[1] our entry; ARGV: our value, channel, "left" message. Returns 1 when the entry was ours (deleted).
constexpr std::string_view leave_script = R"lua(
local ours = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  ours = 1
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return ours
)lua";

// KEYS[1] the node's entry, KEYS[2] its drain key; ARGV[1] validity in ms. Stores the entry as the request,
// so that it names the incarnation to drain. Returns 1 when requested, 0 when the node has no entry.
constexpr std::string_view drain_script = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
redis.call('SET', KEYS[2], v, 'PX', ARGV[1])
return 1
)lua";

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string default_channel(const node_registry::options& opts) {
  return opts.channel.empty() ? opts.key_prefix + "events" : opts.channel;
}

// --- encoding -----------------------------------------------------------------------------------------

json::object to_json(const node_info& n) {
  return json::object{{"id", n.id},
                      {"incarnation", n.incarnation},
                      {"host", n.host},
                      {"client_port", n.client_port},
                      {"cluster_port", n.cluster_port},
                      {"started_at_ms", n.started_at_ms},
                      {"wire_version", n.wire_version}};
}

std::optional<std::int64_t> int_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= std::uint64_t(std::numeric_limits<std::int64_t>::max()))
    return static_cast<std::int64_t>(v->get_uint64());
  return std::nullopt;
}

std::optional<std::string> string_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return std::string(v->get_string());
}

std::optional<std::uint16_t> port_field(const json::object& o, std::string_view key) {
  auto v = int_field(o, key);
  if (!v || *v < 0 || *v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(*v);
}

std::optional<node_info> from_json(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return std::nullopt;
  auto id = string_field(*o, "id");
  auto incarnation = string_field(*o, "incarnation");
  auto host = string_field(*o, "host");
  auto client_port = port_field(*o, "client_port");
  auto cluster_port = port_field(*o, "cluster_port");
  auto started = int_field(*o, "started_at_ms");
  if (!id || id->empty() || !incarnation || incarnation->empty() || !host || !client_port || !cluster_port ||
      !started)
    return std::nullopt;
  std::uint32_t wire_version = 0;  // entries of builds from before the field read as 0
  if (o->contains("wire_version")) {
    auto v = int_field(*o, "wire_version");
    if (!v || *v < 0 || *v > std::int64_t{std::numeric_limits<std::uint32_t>::max()}) return std::nullopt;
    wire_version = static_cast<std::uint32_t>(*v);
  }
  return node_info{std::move(*id), std::move(*incarnation), std::move(*host),
                   *client_port,   *cluster_port,           *started,
                   wire_version};
}

std::optional<std::uint64_t> count_field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
  return std::nullopt;
}

std::optional<node_stats> stats_from_json(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return std::nullopt;
  auto rooms = count_field(*o, "rooms");
  auto connections = count_field(*o, "connections");
  auto stored = count_field(*o, "messages_stored");
  auto at = int_field(*o, "at_ms");
  const json::value* draining = o->if_contains("draining");
  if (!rooms || !connections || !stored || !at || draining == nullptr || !draining->is_bool())
    return std::nullopt;
  return node_stats{*rooms, *connections, *stored, *at, draining->get_bool()};
}

std::optional<json::value> parse_json(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return std::nullopt;
  return v;
}

// {"event":"joined"|"left","node":{…}}
std::string announcement_text(std::string_view event, const node_info& node) {
  return json::serialize(json::object{{"event", event}, {"node", to_json(node)}});
}

std::optional<announcement> decode_announcement(std::string_view text) {
  auto v = parse_json(text);
  const json::object* o = v ? v->if_object() : nullptr;
  if (o == nullptr) return std::nullopt;
  auto event = string_field(*o, "event");
  const json::value* node = o->if_contains("node");
  if (!event || node == nullptr) return std::nullopt;
  announcement a;
  if (*event == "joined") {
    a.what = announcement::kind::joined;
  } else if (*event == "left") {
    a.what = announcement::kind::left;
  } else {
    return std::nullopt;
  }
  auto info = from_json(*node);
  if (!info) return std::nullopt;
  a.node = std::move(*info);
  return a;
}

// SCAN's MATCH pattern for keys starting with `prefix`: glob characters in the prefix are escaped.
std::string prefix_pattern(std::string_view prefix) {
  std::string out;
  for (char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out + "*";
}

}  // namespace

std::string new_incarnation() {
  // random_device is the kernel's generator here; the clock guards against a (theoretical) constant one.
  std::random_device rd;
  std::uint64_t x = (std::uint64_t(rd()) << 32) ^ rd();
  x ^= static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  x ^= static_cast<std::uint64_t>(steady_ms()) << 20;
  // splitmix64's finaliser spreads the clock bits.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9;
  x ^= x >> 27;
  x *= 0x94d049bb133111eb;
  x ^= x >> 31;
  char buf[17];
  constexpr char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, x >>= 4) buf[i] = digits[x & 0xf];
  return std::string(buf, 16);
}

std::string encode(const node_info& node) {
  return json::serialize(to_json(node));
}

std::optional<node_info> decode_node(std::string_view text) {
  auto v = parse_json(text);
  return v ? from_json(*v) : std::nullopt;
}

std::string encode(const node_stats& stats) {
  return json::serialize(json::object{{"rooms", stats.rooms},
                                      {"connections", stats.connections},
                                      {"messages_stored", stats.messages_stored},
                                      {"at_ms", stats.at_ms},
                                      {"draining", stats.draining}});
}

std::optional<node_stats> decode_stats(std::string_view text) {
  auto v = parse_json(text);
  return v ? stats_from_json(*v) : std::nullopt;
}

std::string_view to_string(outcome o) {
  switch (o) {
    case outcome::ok:
      return "ok";
    case outcome::lost:
      return "lost";
    case outcome::not_registered:
      return "not_registered";
    case outcome::stale_incarnation:
      return "stale_incarnation";
    case outcome::unavailable:
      return "unavailable";
  }
  return "?";
}

// --- node_registry ------------------------------------------------------------------------------------

struct node_registry::impl {
  impl(const std::string& url, options o)
      : opts(std::move(o)),
        channel(default_channel(opts)),
        conn(url,
             storage::connection_options(opts, "node registry", "cluster membership is unavailable", "")) {
    if (url.empty()) spdlog::warn("node registry: no redis_url; cluster membership is unavailable");
  }

  mutable std::mutex mutex;
  options opts;
  std::string channel;
  redis_connection conn;
  redis_script register_call{register_script, 1};
  redis_script heartbeat_call{heartbeat_script, 1};
  redis_script leave_call{leave_script, 1};
  redis_script drain_call{drain_script, 2};
  std::optional<node_info> self;
  std::string self_value;                // encode(*self), exactly as stored
  std::unordered_set<std::string> lost;  // incarnations declared down: never registered again

  std::string key(std::string_view id) const { return opts.key_prefix + std::string(id); }
  std::string stats_key(std::string_view id) const { return opts.key_prefix + "stats:" + std::string(id); }
  std::string drain_key(std::string_view id) const { return opts.key_prefix + "drain:" + std::string(id); }
  std::string ttl_text() const { return std::to_string(std::max<std::int64_t>(1, opts.ttl.count())); }

  void declare_lost(std::string_view how) {
    spdlog::warn("node registry: entry of {} (incarnation {}) {}; this incarnation is down", self->id,
                 self->incarnation, how);
    lost.insert(self->incarnation);
    self.reset();
    self_value.clear();
  }

  outcome register_self(const node_info& node) {
    if (lost.contains(node.incarnation)) return outcome::stale_incarnation;
    const std::string value = encode(node);
    auto r = conn.eval(register_call,
                       {key(node.id), value, ttl_text(), channel, announcement_text("joined", node)});
    if (!r) return outcome::unavailable;
    if ((*r)->type == REDIS_REPLY_STRING && text_of(r->get()) != value) {
      const auto old = decode_node(text_of(r->get()));
      spdlog::warn("node registry: {} was still registered as incarnation {}; replaced by {}", node.id,
                   old ? old->incarnation : "(unreadable)", node.incarnation);
    }
    // A different incarnation registered before by this registry is superseded: it may not come back.
    if (self && self->incarnation != node.incarnation) lost.insert(self->incarnation);
    self = node;
    self_value = value;
    return outcome::ok;
  }

  outcome heartbeat() {
    if (!self) return outcome::not_registered;
    auto r = conn.eval(heartbeat_call, {key(self->id), self_value, ttl_text()});
    if (!r) return outcome::unavailable;
    const redisReply* v = r->get();
    if (v->type == REDIS_REPLY_INTEGER && v->integer == 1) return outcome::ok;
    if (v->type == REDIS_REPLY_NIL) {
      declare_lost("expired");
    } else if (v->type == REDIS_REPLY_STRING) {
      const auto now = decode_node(text_of(v));
      declare_lost("was replaced by incarnation " + (now ? now->incarnation : std::string("(unreadable)")));
    } else {
      conn.down("unexpected reply to the heartbeat script");
      return outcome::unavailable;
    }
    return outcome::lost;
  }

  outcome leave() {
    if (!self) return outcome::not_registered;
    auto r = conn.eval(leave_call, {key(self->id), self_value, channel, announcement_text("left", *self)});
    if (!r) return outcome::unavailable;
    if ((*r)->type != REDIS_REPLY_INTEGER) {
      conn.down("unexpected reply to the leave script");
      return outcome::unavailable;
    }
    // Either way this incarnation is over: a node that leaves comes back as a new one.
    lost.insert(self->incarnation);
    self.reset();
    self_value.clear();
    return (*r)->integer == 1 ? outcome::ok : outcome::lost;
  }

  // Every key matching `pattern`, sorted and without duplicates (SCAN may return a key more than once).
  std::optional<std::vector<std::string>> scan(const std::string& pattern) {
    std::set<std::string> keys;
    std::string cursor = "0";
    do {
      auto r = conn.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "500"});
      if (!r) return std::nullopt;
      const redisReply* v = r->get();
      if (v->type != REDIS_REPLY_ARRAY || v->elements != 2 || v->element[0]->type != REDIS_REPLY_STRING ||
          v->element[1]->type != REDIS_REPLY_ARRAY) {
        conn.down("unexpected reply to SCAN");
        return std::nullopt;
      }
      cursor.assign(text_of(v->element[0]));
      const redisReply* batch = v->element[1];
      for (std::size_t i = 0; i < batch->elements; ++i)
        if (batch->element[i]->type == REDIS_REPLY_STRING) keys.emplace(text_of(batch->element[i]));
    } while (cursor != "0");
    return std::vector<std::string>(keys.begin(), keys.end());
  }

  // The values of `keys`, in order; nullopt for a key that expired since it was listed or holds no string.
  // MGET in chunks, so that one command stays small however many nodes there are.
  std::optional<std::vector<std::optional<std::string>>> mget(const std::vector<std::string>& keys) {
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    constexpr std::size_t chunk = 256;
    for (std::size_t from = 0; from < keys.size(); from += chunk) {
      const std::size_t n = std::min(chunk, keys.size() - from);
      std::vector<std::string> args{"MGET"};
      args.insert(args.end(), keys.begin() + from, keys.begin() + from + n);
      auto r = conn.command(args);
      if (!r) return std::nullopt;
      const redisReply* v = r->get();
      if (v->type != REDIS_REPLY_ARRAY || v->elements != n) {
        conn.down("unexpected reply to MGET");
        return std::nullopt;
      }
      for (std::size_t i = 0; i < n; ++i) {
        const redisReply* e = v->element[i];
        out.push_back(e->type == REDIS_REPLY_STRING ? std::optional<std::string>(text_of(e)) : std::nullopt);
      }
    }
    return out;
  }

  std::optional<std::vector<node_info>> live_nodes() {
    auto keys = scan(prefix_pattern(opts.key_prefix));
    if (!keys) return std::nullopt;
    // Node ids never contain ':', so a ':' after the prefix marks a key that is not an entry (stats, drain
    // requests, or anything else sharing the prefix): not worth fetching.
    std::erase_if(*keys, [&](const std::string& k) {
      return std::string_view(k).substr(opts.key_prefix.size()).find(':') != std::string_view::npos;
    });
    auto values = mget(*keys);
    if (!values) return std::nullopt;
    std::vector<node_info> out;
    for (std::size_t i = 0; i < keys->size(); ++i) {
      if (!(*values)[i]) continue;
      auto node = decode_node(*(*values)[i]);
      // Only entries stored under their own id count: anything else under the prefix is not ours to read.
      if (node && (*keys)[i] == key(node->id)) out.push_back(std::move(*node));
    }
    std::sort(out.begin(), out.end(), [](const node_info& a, const node_info& b) { return a.id < b.id; });
    return out;
  }

  outcome publish_stats(const node_stats& stats) {
    if (!self) return outcome::not_registered;
    auto r = conn.command({"SET", stats_key(self->id), encode(stats), "PX", ttl_text()});
    return r ? outcome::ok : outcome::unavailable;
  }

  std::optional<std::vector<std::pair<std::string, node_stats>>> stats() {
    const std::string prefix = stats_key("");
    auto keys = scan(prefix_pattern(prefix));
    if (!keys) return std::nullopt;
    auto values = mget(*keys);
    if (!values) return std::nullopt;
    // Keys come sorted from scan(), and all share the prefix, so the ids come out sorted too.
    std::vector<std::pair<std::string, node_stats>> out;
    for (std::size_t i = 0; i < keys->size(); ++i) {
      if (!(*values)[i]) continue;
      std::string id = (*keys)[i].substr(prefix.size());
      if (id.empty() || id.find(':') != std::string::npos) continue;  // not a node id
      if (auto s = decode_stats(*(*values)[i])) out.emplace_back(std::move(id), *s);
    }
    return out;
  }

  outcome request_drain(std::string_view node_id, std::chrono::milliseconds valid_for) {
    // Not an id: `<prefix>stats:x` names a key that exists, but no node.
    if (node_id.empty() || node_id.find(':') != std::string_view::npos) return outcome::not_registered;
    const std::string ms = std::to_string(std::max<std::int64_t>(1, valid_for.count()));
    auto r = conn.eval(drain_call, {key(node_id), drain_key(node_id), ms});
    if (!r) return outcome::unavailable;
    if ((*r)->type != REDIS_REPLY_INTEGER) {
      conn.down("unexpected reply to the drain script");
      return outcome::unavailable;
    }
    return (*r)->integer == 1 ? outcome::ok : outcome::not_registered;
  }

  std::optional<bool> drain_requested() {
    if (!self) return std::nullopt;
    auto r = conn.command({"GET", drain_key(self->id)});
    if (!r) return std::nullopt;
    if ((*r)->type == REDIS_REPLY_NIL) return false;
    if ((*r)->type != REDIS_REPLY_STRING) {
      conn.down("unexpected reply to GET of the drain key");
      return std::nullopt;
    }
    return text_of(r->get()) == self_value;  // a request for an earlier incarnation is not for us
  }
};

node_registry::node_registry(std::string url) : node_registry(std::move(url), options{}) {}

node_registry::node_registry(std::string url, options opts)
    : impl_(std::make_unique<impl>(std::move(url), std::move(opts))) {}

node_registry::~node_registry() = default;

outcome node_registry::register_self(const node_info& self) {
  std::lock_guard lock(impl_->mutex);
  return impl_->register_self(self);
}

outcome node_registry::heartbeat() {
  std::lock_guard lock(impl_->mutex);
  return impl_->heartbeat();
}

outcome node_registry::leave() {
  std::lock_guard lock(impl_->mutex);
  return impl_->leave();
}

std::optional<std::vector<node_info>> node_registry::live_nodes() {
  std::lock_guard lock(impl_->mutex);
  return impl_->live_nodes();
}

outcome node_registry::publish_stats(const node_stats& stats) {
  std::lock_guard lock(impl_->mutex);
  return impl_->publish_stats(stats);
}

std::optional<std::vector<std::pair<std::string, node_stats>>> node_registry::stats() {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats();
}

outcome node_registry::request_drain(std::string_view node_id, std::chrono::milliseconds valid_for) {
  std::lock_guard lock(impl_->mutex);
  return impl_->request_drain(node_id, valid_for);
}

std::optional<bool> node_registry::drain_requested() {
  std::lock_guard lock(impl_->mutex);
  return impl_->drain_requested();
}

std::optional<node_info> node_registry::self() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->self;
}

const std::string& node_registry::channel() const {
  return impl_->channel;
}

bool node_registry::reachable() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->conn.reachable();
}

// --- announcements ------------------------------------------------------------------------------------

struct announcements::impl {
  impl(const std::string& url, options o)
      : opts(std::move(o)),
        channel(default_channel(opts)),
        conn(url, storage::connection_options(opts, "node announcements", "joins and leaves go unheard",
                                              "subscribing again")) {
    if (url.empty()) spdlog::warn("node announcements: no redis_url; cluster membership is unavailable");
    subscribe();
  }

  options opts;
  std::string channel;
  redis_connection conn;  // subscribed, so driven through its context(): the socket is polled here
  bool subscribed = false;
  bool resync_pending = false;

  // Opens the connection and subscribes; on success the next next() reports a resync.
  bool subscribe() {
    auto r = conn.command({"SUBSCRIBE", channel});
    if (!r) return false;
    const redisReply* v = r->get();
    if (v->type != REDIS_REPLY_ARRAY || v->elements < 1 || v->element[0]->type != REDIS_REPLY_STRING ||
        text_of(v->element[0]) != "subscribe") {
      conn.down("unexpected reply to SUBSCRIBE");
      return false;
    }
    subscribed = true;
    resync_pending = true;
    return true;
  }

  void down(std::string why) {
    subscribed = false;
    conn.down(std::move(why));
  }

  // The subscribed connection's context. Only while subscribed: the connection is open then (every failure
  // goes through down()), so this never opens a new, unsubscribed one.
  redisContext* context() { return conn.context(); }

  // A complete message already read from the socket, if any. Other pushes (confirmations) are dropped.
  std::optional<announcement> buffered() {
    while (subscribed) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(context(), &raw) != REDIS_OK) {
        down(conn.error());
        return std::nullopt;
      }
      if (raw == nullptr) return std::nullopt;
      redis_reply_ptr r(static_cast<redisReply*>(raw));
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
          text_of(r->element[0]) != "message" || r->element[2]->type != REDIS_REPLY_STRING)
        continue;
      if (auto a = decode_announcement(text_of(r->element[2]))) return a;
      spdlog::debug("node announcements: skipping a malformed message on {}", channel);
    }
    return std::nullopt;
  }

  std::optional<announcement> next(std::chrono::milliseconds wait) {
    const std::int64_t deadline = steady_ms() + std::max<std::int64_t>(0, wait.count());
    for (;;) {
      if (!subscribed) {
        if (!conn.configured()) return std::nullopt;
        if (steady_ms() >= conn.next_attempt_ms()) subscribe();
        if (!subscribed) {
          // Wait for the backoff to end (at least a little, so a zero backoff does not spin), or give up
          // when the caller's wait ends first.
          const std::int64_t now = steady_ms();
          const std::int64_t until = std::min(deadline, std::max(conn.next_attempt_ms(), now + 10));
          if (now >= deadline) return std::nullopt;
          if (until > now) std::this_thread::sleep_for(std::chrono::milliseconds(until - now));
          continue;
        }
      }
      if (resync_pending) {
        resync_pending = false;
        return announcement{};
      }
      if (auto a = buffered()) return a;
      if (!subscribed) continue;
      pollfd p{context()->fd, POLLIN, 0};
      const std::int64_t left = std::max<std::int64_t>(0, deadline - steady_ms());
      const int n = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left, 60'000)));
      if (n < 0) {
        if (errno == EINTR) continue;
        down(std::strerror(errno));
        continue;
      }
      if (n == 0) {
        if (steady_ms() >= deadline) return std::nullopt;
        continue;
      }
      // Readable, closed or failed: a read tells which (and never blocks now).
      if (redisBufferRead(context()) != REDIS_OK) down(conn.error());
    }
  }
};

announcements::announcements(std::string url) : announcements(std::move(url), options{}) {}

announcements::announcements(std::string url, options opts)
    : impl_(std::make_unique<impl>(std::move(url), std::move(opts))) {}

announcements::~announcements() = default;

std::optional<announcement> announcements::next(std::chrono::milliseconds wait) {
  return impl_->next(wait);
}

bool announcements::subscribed() const {
  return impl_->subscribed;
}

}  // namespace chorus::cluster
