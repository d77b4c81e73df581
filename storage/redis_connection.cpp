// The shared synchronous Redis connection: connecting, pipelining, EVALSHA with reloads, and the backoff.
#include "storage/redis_connection.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace chorus::storage {

/// One command as hiredis takes it: pointers into strings that outlive the call.
struct redis_connection::argv_buffer {
  mutable std::vector<const char*> argv;  // mutable: hiredis 0.14 takes `const char**`
  std::vector<std::size_t> lens;

  void add(std::string_view a) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
};

namespace {

bool is_noscript(const redisReply* r) {
  return r != nullptr && r->type == REDIS_REPLY_ERROR && text_of(r).starts_with("NOSCRIPT");
}

std::string with_note(std::string_view line, const std::string& note) {
  return note.empty() ? std::string(line) : std::string(line) + "; " + note;
}

}  // namespace

redis_connection::redis_connection(std::string_view url, options opts)
    : opts_(std::move(opts)), backoff_(opts_.min_backoff) {
  if (url.empty()) return;
  if (!(endpoint_ = parse_redis_url(url))) {
    spdlog::error("{}",
                  with_note(opts_.label + ": redis_url is not redis://[[user]:password@]host[:port][/db]",
                            opts_.fallback));
    return;
  }
  where_ = endpoint_->host + ":" + std::to_string(endpoint_->port);
}

redis_connection::~redis_connection() = default;

std::int64_t redis_connection::now() const {
  if (opts_.now_ms) return opts_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string redis_connection::error() const {
  return ctx_ && ctx_->err ? ctx_->errstr : "no reply";
}

void redis_connection::down(std::string why) {
  ctx_.reset();
  next_attempt_ms_ = now() + backoff_.count();
  backoff_ = std::min(backoff_ * 2, opts_.max_backoff);
  if (state_ != state::down) {
    spdlog::warn(
        "{}", with_note(opts_.label + ": Redis at " + where_ + " unreachable (" + why + ")", opts_.fallback));
    state_ = state::down;
  }
}

void redis_connection::up() {
  backoff_ = opts_.min_backoff;
  if (state_ == state::down)
    spdlog::info("{}", with_note(opts_.label + ": Redis at " + where_ + " is back", opts_.resumed));
  if (state_ == state::unknown) spdlog::debug("{}: using Redis at {}", opts_.label, where_);
  state_ = state::up;
}

bool redis_connection::connect() {
  if (!endpoint_) return false;
  if (ctx_) return true;
  // The first attempt, and any after the backoff, may go ahead; a first failure starts the backoff.
  if (state_ == state::down && now() < next_attempt_ms_) return false;
  ctx_.reset(
      redisConnectWithTimeout(endpoint_->host.c_str(), endpoint_->port, to_timeval(opts_.connect_timeout)));
  if (!ctx_ || ctx_->err) {
    down(ctx_ ? ctx_->errstr : "cannot allocate a context");
    return false;
  }
  // A read timeout leaves the context unusable; that is fine here, since any failure drops it.
  if (redisSetTimeout(ctx_.get(), to_timeval(opts_.command_timeout)) != REDIS_OK) {
    down(error());
    return false;
  }
  // Each of these drops the connection and logs on failure (a wrong password reads "unreachable (WRONGPASS
  // …)"): the owner falls back all the same.
  const auto& ep = *endpoint_;
  if (!ep.password.empty() &&
      !(ep.user.empty() ? command({"AUTH", ep.password}) : command({"AUTH", ep.user, ep.password})))
    return false;
  if (ep.db != 0 && !command({"SELECT", std::to_string(ep.db)})) return false;
  if (!opts_.client_name.empty() && !command({"CLIENT", "SETNAME", opts_.client_name})) return false;
  ++generation_;
  up();
  return true;
}

std::optional<std::vector<redis_reply_ptr>> redis_connection::exchange(
    std::span<const argv_buffer> commands) {
  if (!connect()) return std::nullopt;
  for (const auto& c : commands) {
    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(c.argv.size()), c.argv.data(), c.lens.data()) !=
        REDIS_OK) {
      down(error());
      return std::nullopt;
    }
  }
  std::vector<redis_reply_ptr> replies;
  replies.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) {
      down(error());
      return std::nullopt;
    }
    replies.emplace_back(static_cast<redisReply*>(raw));
  }
  return replies;
}

std::optional<redis_reply_ptr> redis_connection::judged(std::optional<std::vector<redis_reply_ptr>> replies) {
  if (!replies || replies->size() != 1) return std::nullopt;
  redis_reply_ptr& r = replies->front();
  if (r->type == REDIS_REPLY_ERROR) {
    down(std::string(text_of(r.get())));
    return std::nullopt;
  }
  return std::move(r);
}

std::optional<redis_reply_ptr> redis_connection::command(std::initializer_list<std::string_view> args) {
  argv_buffer c;
  for (auto a : args) c.add(a);
  return judged(exchange(std::span(&c, 1)));
}

std::optional<redis_reply_ptr> redis_connection::command(std::span<const std::string> args) {
  argv_buffer c;
  for (const auto& a : args) c.add(a);
  return judged(exchange(std::span(&c, 1)));
}

std::optional<std::vector<redis_reply_ptr>> redis_connection::pipeline(
    std::span<const std::vector<std::string>> commands) {
  std::vector<argv_buffer> buffers(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i)
    for (const auto& a : commands[i]) buffers[i].add(a);
  auto replies = exchange(buffers);
  if (!replies) return std::nullopt;
  for (const auto& r : *replies) {
    if (r->type == REDIS_REPLY_ERROR) {
      down(std::string(text_of(r.get())));
      return std::nullopt;
    }
  }
  return replies;
}

bool redis_connection::load(redis_script& script) {
  auto r = command({"SCRIPT", "LOAD", script.text()});
  if (!r) return false;
  if ((*r)->type != REDIS_REPLY_STRING) {
    down("unexpected reply to SCRIPT LOAD");
    return false;
  }
  script.sha_.assign(text_of(r->get()));
  return true;
}

std::optional<redis_reply_ptr> redis_connection::eval(
    redis_script& script, std::initializer_list<std::string_view> keys_then_args) {
  std::vector<std::string> call(keys_then_args.begin(), keys_then_args.end());
  auto replies = eval_many(script, std::span(&call, 1));
  if (!replies) return std::nullopt;
  return std::move(replies->front());
}

std::optional<std::vector<redis_reply_ptr>> redis_connection::eval_many(
    redis_script& script, std::span<const std::vector<std::string>> calls) {
  if (!connect()) return std::nullopt;
  if (calls.empty()) return std::vector<redis_reply_ptr>{};
  if (script.sha_.empty() && !load(script)) return std::nullopt;
  const std::string nkeys = std::to_string(script.keys());
  std::vector<redis_reply_ptr> replies(calls.size());
  std::vector<std::size_t> todo(calls.size());
  for (std::size_t i = 0; i < calls.size(); ++i) todo[i] = i;
  // A second round only for the calls that met NOSCRIPT: the script cache was flushed under us.
  for (int attempt = 0; attempt < 2 && !todo.empty(); ++attempt) {
    std::vector<argv_buffer> buffers(todo.size());
    for (std::size_t j = 0; j < todo.size(); ++j) {
      buffers[j].add("EVALSHA");
      buffers[j].add(script.sha_);
      buffers[j].add(nkeys);
      for (const auto& a : calls[todo[j]]) buffers[j].add(a);
    }
    auto got = exchange(buffers);
    if (!got) return std::nullopt;
    std::vector<std::size_t> again;
    for (std::size_t j = 0; j < todo.size(); ++j) {
      if (is_noscript((*got)[j].get())) again.push_back(todo[j]);
      replies[todo[j]] = std::move((*got)[j]);
    }
    todo = std::move(again);
    if (!todo.empty() && !load(script)) return std::nullopt;
  }
  for (const auto& r : replies) {
    if (r->type == REDIS_REPLY_ERROR) {
      down(std::string(text_of(r.get())));
      return std::nullopt;
    }
  }
  return replies;
}

}  // namespace chorus::storage
