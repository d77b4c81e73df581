// Test helpers for code that talks to Redis: a plain hiredis connection to look behind its back, and a
// capture of what it logs.
#pragma once

#include <hiredis/hiredis.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::testing {

/// A closed port on loopback: connecting fails at once.
inline constexpr const char* unreachable_url = "redis://127.0.0.1:1";

/// The Redis the tests may use (scripts/test.sh exports it), or "" when there is none.
inline std::string redis_url() {
  const char* url = std::getenv("CHORUS_REDIS_URL");
  return url != nullptr ? url : "";
}

/// Records what the code under test logs (through spdlog's default logger) while it lives, so tests can count
/// lines such as "unreachable" and "is back".
class log_capture {
 public:
  log_capture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)) {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("test", sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~log_capture() { spdlog::set_default_logger(previous_); }

  int count(std::string_view text) const {
    int n = 0;
    for (const auto& line : sink_->last_formatted())
      if (line.find(text) != std::string::npos) ++n;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

/// A plain hiredis connection for looking at Redis behind the back of the code under test.
struct raw_redis {
  redisContext* ctx = nullptr;
  explicit raw_redis(const std::string& url) {
    // redis://host:port, as scripts/services.sh prints it.
    const auto rest = url.substr(url.find("://") + 3);
    const auto colon = rest.rfind(':');
    ctx = redisConnect(rest.substr(0, colon).c_str(), std::stoi(rest.substr(colon + 1)));
  }
  ~raw_redis() {
    if (ctx != nullptr) redisFree(ctx);
  }
  bool ok() const { return ctx != nullptr && ctx->err == 0; }
  // The integer reply, the string reply (as text), or "" on anything else.
  std::string run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.c_str());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx, int(argv.size()), argv.data(), lens.data()));
    std::string out;
    if (r != nullptr && r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
    if (r != nullptr &&
        (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR))
      out.assign(r->str, r->len);
    if (r != nullptr) freeReplyObject(r);
    return out;
  }
  // Kills the connection named `name` (CLIENT SETNAME); true when exactly one was killed.
  bool kill(const std::string& name) {
    std::istringstream clients(run({"CLIENT", "LIST"}));
    std::string line, id;
    while (std::getline(clients, line))
      if (line.find(" name=" + name + " ") != std::string::npos) id = line.substr(3, line.find(' ') - 3);
    return !id.empty() && run({"CLIENT", "KILL", "ID", id}) == "1";
  }
};

}  // namespace chorus::testing
