// Test helpers for code that talks to Redis: a plain hiredis connection to look behind its back, names unique
// per run (and, through log_capture.hpp, a capture of what the code logs).
#pragma once

#include <hiredis/hiredis.h>

#include "tests/support/log_capture.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::testing {

/// A closed port on loopback: connecting fails at once.
inline constexpr const char* unreachable_url = "redis://127.0.0.1:1";

/// A name unique per process and per call ("test-<pid>-<start>-<n>-<name>"), so that reruns and parallel runs
/// never share a key or a client name.
inline std::string unique(std::string_view name) {
  static const auto run = std::chrono::steady_clock::now().time_since_epoch().count();
  static int counter = 0;
  return "test-" + std::to_string(::getpid()) + "-" + std::to_string(run) + "-" + std::to_string(++counter) +
         "-" + std::string(name);
}

/// The Redis the tests may use (scripts/test.sh exports it), or "" when there is none.
inline std::string redis_url() {
  const char* url = std::getenv("CHORUS_REDIS_URL");
  return url != nullptr ? url : "";
}

/// A plain hiredis connection for looking at Redis behind the back of the code under test.
struct raw_redis {
  redisContext* ctx = nullptr;
  explicit raw_redis(const std::string& url) {
    // redis://host:port, as scripts/services.sh prints it.
    const auto rest = url.substr(url.find("://") + 3);
    const auto colon = rest.rfind(':');
    ctx = redisConnect(rest.substr(0, colon).c_str(), std::stoi(rest.substr(colon + 1)));
    if (auto slash = rest.find('/', colon); slash != std::string::npos && ok())
      run({"SELECT", rest.substr(slash + 1)});
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

/// A Redis database (1–15) of the server CHORUS_REDIS_URL names, claimed for one test's cluster. ctest runs
/// tests in parallel, and a node counts every node registered in its Redis database as a peer: clusters of
/// different tests must not meet. The claim is a key in that database; it expires should the test crash.
class redis_database {
 public:
  explicit redis_database(std::string server_url) : conn_(server_url), token_(std::to_string(::getpid())) {
    // redis://host:port[/db] as scripts/services.sh prints it: keep the server part only.
    auto path = server_url.find('/', server_url.find("://") + 3);
    server_ = server_url.substr(0, path);
    for (int db = 1; db < 16 && conn_.ok(); ++db) {
      conn_.run({"SELECT", std::to_string(db)});
      if (conn_.run({"SET", claim_key, token_, "NX", "PX", "300000"}) == "OK") {
        // Ours now: whatever an earlier test left (entries of nodes it killed, not expired yet) goes, lest
        // this test's nodes wait for peers that are gone.
        db_ = db;
        flush();
        break;
      }
    }
  }
  ~redis_database() {
    if (db_ == 0) return;
    conn_.run({"SELECT", std::to_string(db_)});
    if (conn_.run({"GET", claim_key}) == token_) conn_.run({"DEL", claim_key});
  }
  redis_database(const redis_database&) = delete;
  redis_database& operator=(const redis_database&) = delete;

  bool claimed() const { return db_ != 0; }
  std::string url() const { return server_ + "/" + std::to_string(db_); }

  /// Empties the database but for the claim: what a Redis restart without persistence does to the nodes'
  /// entries. The flush takes the claim with it, so the claim is set again in the same transaction: between
  /// two separate commands another test could claim this database too, and both clusters (with users of the
  /// same names) would meet in it.
  void flush() {
    conn_.run({"SELECT", std::to_string(db_)});
    conn_.run({"MULTI"});
    conn_.run({"FLUSHDB"});
    conn_.run({"SET", claim_key, token_, "PX", "300000"});
    conn_.run({"EXEC"});
  }

 private:
  static constexpr const char* claim_key = "chorus-test:cluster-claim";
  raw_redis conn_;
  std::string token_;
  std::string server_;
  int db_ = 0;
};

}  // namespace chorus::testing
