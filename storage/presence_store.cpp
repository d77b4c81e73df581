// Cluster-wide presence as Lua scripts over one redis_connection, mirrored from this node's own counts.
#include "storage/presence_store.hpp"
#include "storage/redis_connection.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chorus::storage {
namespace {

// Whether a node other than `me` has `user` in its hash. The set lists the nodes that may have a hash; one
// whose hash has expired (a dead node) is dropped from the set here, so the set stays as small as the
// cluster. Reading keys not passed in KEYS is fine on a standalone Redis (not on Redis Cluster).
constexpr std::string_view elsewhere_function = R"lua(
local function elsewhere(set, me, prefix, user)
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    if id ~= me then
      local key = prefix .. id
      if redis.call('EXISTS', key) == 0 then
        redis.call('SREM', set, id)
      elseif redis.call('HEXISTS', key, user) == 1 then
        return 1
      end
    end
  end
  return 0
end
)lua";

// KEYS[1] this node's hash, KEYS[2] the node set; ARGV: user, this node's count of the user (0: none),
// ttl ms, this node's id, node hash prefix, '1' to ask whether another node has the user. Returns 1 when
// asked and another live node has it, else 0.
constexpr std::string_view update_body = R"lua(
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[4])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[6] ~= '1' then return 0 end
return elsewhere(KEYS[2], ARGV[4], ARGV[5], ARGV[1])
)lua";

// KEYS[1] the node set; ARGV: user, node hash prefix, this node's id. 1 when another live node has the user.
constexpr std::string_view online_body = R"lua(
return elsewhere(KEYS[1], ARGV[3], ARGV[2], ARGV[1])
)lua";

const std::string& update_script() {
  static const std::string text = std::string(elsewhere_function) + std::string(update_body);
  return text;
}

const std::string& online_script() {
  static const std::string text = std::string(elsewhere_function) + std::string(online_body);
  return text;
}

// HSET arguments per command when the hash is rewritten, so that one command stays small.
constexpr std::size_t rewrite_chunk = 512;

}  // namespace

struct presence_store::impl {
  impl(std::string url, std::string id, options o)
      : opts(std::move(o)),
        node_id(std::move(id)),
        conn(url, connection_options(opts, "presence", "presence counts this node only",
                                     "presence is cluster-wide again")),
        hash(opts.key_prefix + "node:" + node_id),
        set(opts.key_prefix + "nodes"),
        node_prefix(opts.key_prefix + "node:"),
        ttl(std::to_string(std::max<std::int64_t>(1, opts.ttl.count()))) {
    if (url.empty()) spdlog::debug("presence: no redis_url; presence is per node");
  }

  options opts;
  std::string node_id;
  redis_connection conn;
  const std::string hash;
  const std::string set;
  const std::string node_prefix;
  const std::string ttl;
  redis_script update{update_script(), 2};
  redis_script online_check{online_script(), 1};
  std::unordered_map<std::string, std::size_t> local;  ///< this node's connections per user: the truth
  std::uint64_t mirrored_generation = 0;  ///< the connection whose Redis holds `local` (0: none yet)
  bool last_shared = false;

  // Replaces this node's hash with `local`, in one transaction (MULTI … EXEC, pipelined in one round trip),
  // so no other node sees it half written. Drops what an earlier process of this node id left behind.
  bool rewrite() {
    std::vector<std::vector<std::string>> commands{{"MULTI"}, {"DEL", hash}};
    std::vector<std::string> hset;
    for (const auto& [user, count] : local) {
      if (hset.empty()) hset = {"HSET", hash};
      hset.push_back(user);
      hset.push_back(std::to_string(count));
      if (hset.size() >= 2 + 2 * rewrite_chunk) commands.push_back(std::exchange(hset, {}));
    }
    if (!hset.empty()) commands.push_back(std::move(hset));
    if (!local.empty()) {
      commands.push_back({"PEXPIRE", hash, ttl});
      commands.push_back({"SADD", set, node_id});
    }
    commands.push_back({"EXEC"});
    auto replies = conn.pipeline(commands);
    if (!replies) return false;
    if (replies->back()->type != REDIS_REPLY_ARRAY) {
      conn.down("unexpected reply to EXEC");
      return false;
    }
    mirrored_generation = conn.generation();
    return true;
  }

  // True when Redis is reachable and holds this node's counts: a new connection (the first, or one after an
  // outage during which counts changed here only) rewrites them first.
  bool mirrored() {
    if (!conn.connect()) return false;
    return mirrored_generation == conn.generation() || rewrite();
  }

  std::vector<bool> apply(std::span<const presence_change> changes) {
    // Per-node answers first, from this node's counts; Redis then turns "first" or "last" into "not" where
    // another node has the user. Nothing is sent for a close of a user with no connection counted here.
    std::vector<bool> answers(changes.size(), false);
    std::vector<std::vector<std::string>> calls;
    std::vector<std::size_t> sent;  // index in `changes` of each call
    for (std::size_t i = 0; i < changes.size(); ++i) {
      const auto& c = changes[i];
      std::size_t n = 0;
      if (c.opened) {
        n = ++local[c.user];
      } else {
        auto it = local.find(c.user);
        if (it == local.end()) continue;
        n = --it->second;
        if (n == 0) local.erase(it);
      }
      const bool ask = c.opened ? n == 1 : n == 0;
      answers[i] = ask;
      if (!conn.configured()) continue;
      calls.push_back({hash, set, c.user, std::to_string(n), ttl, node_id, node_prefix, ask ? "1" : "0"});
      sent.push_back(i);
    }
    last_shared = false;
    if (calls.empty() || !mirrored()) return answers;
    auto replies = conn.eval_many(update, calls);
    if (!replies) return answers;
    if (!std::ranges::all_of(*replies, [](const auto& r) { return r->type == REDIS_REPLY_INTEGER; })) {
      conn.down("unexpected reply to the presence script");
      return answers;
    }
    for (std::size_t j = 0; j < sent.size(); ++j)
      if ((*replies)[j]->integer == 1) answers[sent[j]] = false;
    last_shared = true;
    return answers;
  }

  bool one(std::string_view user, bool opened) {
    const presence_change change{std::string(user), opened};
    return apply(std::span(&change, 1)).front();
  }

  std::optional<bool> online(std::string_view user) {
    const bool here = local.contains(std::string(user));
    last_shared = false;
    if (mirrored()) {
      if (auto r = conn.eval(online_check, {set, user, node_prefix, node_id})) {
        if ((*r)->type == REDIS_REPLY_INTEGER) {
          last_shared = true;
          return here || (*r)->integer == 1;
        }
        conn.down("unexpected reply to the online script");
      }
    }
    if (here) return true;
    return std::nullopt;
  }

  bool refresh() {
    last_shared = false;
    if (!conn.connect()) return false;
    if (mirrored_generation != conn.generation()) return last_shared = rewrite();
    if (local.empty()) return last_shared = true;  // no hash to keep alive
    auto r = conn.command({"PEXPIRE", hash, ttl});
    if (!r) return false;
    if ((*r)->type != REDIS_REPLY_INTEGER) {
      conn.down("unexpected reply to PEXPIRE");
      return false;
    }
    // 0: the hash is gone though we have connections — it expired while this node was paused or cut off
    // for longer than the TTL (other nodes already count those users as offline), or Redis lost it.
    if ((*r)->integer == 0) {
      spdlog::warn("presence: this node's entry in Redis had expired; writing its {} users again",
                   local.size());
      return last_shared = rewrite();
    }
    return last_shared = true;
  }

  bool clear() {
    local.clear();
    last_shared = false;
    if (!conn.configured()) return true;
    const std::vector<std::vector<std::string>> commands{{"DEL", hash}, {"SREM", set, node_id}};
    return last_shared = conn.pipeline(commands).has_value();
  }
};

presence_store::presence_store(std::string url, std::string node_id)
    : presence_store(std::move(url), std::move(node_id), options{}) {}

presence_store::presence_store(std::string url, std::string node_id, options opts)
    : impl_(std::make_unique<impl>(std::move(url), std::move(node_id), std::move(opts))) {}

presence_store::~presence_store() = default;

bool presence_store::connected(std::string_view user) {
  return impl_->one(user, true);
}

bool presence_store::gone(std::string_view user) {
  return impl_->one(user, false);
}

std::vector<bool> presence_store::apply(std::span<const presence_change> changes) {
  return impl_->apply(changes);
}

std::optional<bool> presence_store::online(std::string_view user) {
  return impl_->online(user);
}

bool presence_store::refresh() {
  return impl_->refresh();
}

bool presence_store::clear() {
  return impl_->clear();
}

bool presence_store::shared() const {
  return impl_->last_shared;
}

std::size_t presence_store::local_connections(std::string_view user) const {
  auto it = impl_->local.find(std::string(user));
  return it == impl_->local.end() ? 0 : it->second;
}

}  // namespace chorus::storage
