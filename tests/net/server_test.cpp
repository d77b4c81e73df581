// net::server over real sockets and a fake session factory: routes, upgrade, batching, back-pressure, stop.
#include "net/server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "actors/protocol.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/ws_client.hpp"

namespace {

using namespace std::chrono_literals;
using chorus::actors::client_link;
using chorus::actors::connection_info;
using chorus::actors::frame_ptr;
using chorus::actors::http_request;
using chorus::actors::http_response;
using chorus::actors::session_handle;
using chorus::actors::traffic;
using chorus::testing::http_call;
using chorus::testing::http_connection;
using chorus::testing::ws_client;
namespace json = boost::json;
namespace close_code = chorus::protocol::close_code;

frame_ptr frame(std::string text) {
  return std::make_shared<const std::string>(std::move(text));
}

std::string padded(const std::string& key, int n, std::size_t bytes) {
  std::string s = "{\"" + key + "\":" + std::to_string(n) + ",\"pad\":\"";
  s.append(bytes > s.size() + 2 ? bytes - s.size() - 2 : 0, 'x');
  s += "\"}";
  return s;
}

ws_client::options options_with_target(std::string target) {
  ws_client::options o;
  o.target = std::move(target);
  return o;
}

ws_client::options options_with_receive_buffer(int bytes) {
  ws_client::options o;
  o.receive_buffer_bytes = bytes;
  return o;
}

/// Records what net/ tells the sessions and lets a test reach every link. An echo session pushes each
/// text frame back as essential. Threading: the factory and its sessions are called on connection
/// strands, the test reads from its own thread; everything shared is under `mu`.
class fake_factory final : public chorus::actors::session_factory {
 public:
  std::unique_ptr<session_handle> open(std::shared_ptr<client_link> link, connection_info info) override {
    std::lock_guard lk(mu_);
    links_.push_back(link);
    infos_.push_back(std::move(info));
    cv_.notify_all();
    return std::make_unique<echo_session>(std::move(link), *this);
  }

  /// The link of the `index`-th opened connection, waiting up to 5 s for it.
  std::shared_ptr<client_link> link(std::size_t index) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, 5s, [&] { return links_.size() > index; })) return nullptr;
    return links_[index];
  }
  connection_info info(std::size_t index) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, 5s, [&] { return infos_.size() > index; });
    return index < infos_.size() ? infos_[index] : connection_info{};
  }
  bool wait_closed(std::size_t count, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return closed_.size() >= count; });
  }
  bool wait_binary(int count) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, 5s, [&] { return binaries_ >= count; });
  }
  std::vector<std::string> closed_reasons() {
    std::lock_guard lk(mu_);
    return closed_;
  }
  /// Every `n`-th text frame of a session asks the connection to stop reading (0: never).
  void pause_every(int n) { pause_every_ = n; }
  std::size_t opened() {
    std::lock_guard lk(mu_);
    return links_.size();
  }

 private:
  class echo_session final : public session_handle {
   public:
    echo_session(std::shared_ptr<client_link> link, fake_factory& f) : link_(std::move(link)), f_(f) {}
    bool on_text(std::string text) override {
      link_->push(frame(std::move(text)), traffic::essential);
      const int every = f_.pause_every_.load();
      return every == 0 || ++texts_ % every != 0;
    }
    bool on_binary() override {
      std::lock_guard lk(f_.mu_);
      ++f_.binaries_;
      f_.cv_.notify_all();
      return true;
    }
    void on_closed(std::string reason) override {
      EXPECT_FALSE(closed_) << "on_closed called twice";
      closed_ = true;
      std::lock_guard lk(f_.mu_);
      f_.closed_.push_back(std::move(reason));
      f_.cv_.notify_all();
    }

   private:
    std::shared_ptr<client_link> link_;
    fake_factory& f_;
    bool closed_ = false;
    int texts_ = 0;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<client_link>> links_;
  std::vector<connection_info> infos_;
  std::vector<std::string> closed_;
  int binaries_ = 0;
  std::atomic<int> pause_every_ = 0;
};

/// Records every API request. By default answers at once (on the connection's strand) with the request's
/// fields as JSON; with hold(true) it keeps each `reply` for the test to call later from its own thread.
class fake_api final : public chorus::actors::http_handler {
 public:
  using reply_fn = std::function<void(http_response)>;

  void handle(http_request req, reply_fn reply) override {
    std::unique_lock lk(mu_);
    requests_.push_back(req);
    cv_.notify_all();
    if (drop_) return;  // `reply` goes away unanswered
    if (hold_) {
      held_.push_back(std::move(reply));
      return;
    }
    lk.unlock();
    reply(http_response{200, echo(req), {}});
  }

  static std::string echo(const http_request& r) {
    json::object o{{"method", r.method},
                   {"path", r.path},
                   {"query", r.query},
                   {"body", r.body},
                   {"content_type", r.content_type},
                   {"remote_ip", r.remote_ip}};
    o["bearer"] = r.bearer_token ? json::value(*r.bearer_token) : json::value(nullptr);
    return json::serialize(o);
  }

  void hold(bool on) {
    std::lock_guard lk(mu_);
    hold_ = on;
  }
  void drop(bool on) {
    std::lock_guard lk(mu_);
    drop_ = on;
  }
  /// Waits up to 5 s until `count` requests have arrived.
  bool wait_requests(std::size_t count) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, 5s, [&] { return requests_.size() >= count; });
  }
  std::vector<http_request> requests() {
    std::lock_guard lk(mu_);
    return requests_;
  }
  /// The `index`-th held reply (the request must have arrived).
  reply_fn held(std::size_t index) {
    std::lock_guard lk(mu_);
    return index < held_.size() ? held_[index] : reply_fn{};
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<http_request> requests_;
  std::vector<reply_fn> held_;
  bool hold_ = false;
  bool drop_ = false;
};

/// A plain blocking HTTP exchange, for what the test client cannot send (other methods, keep-alive).
class raw_http {
 public:
  explicit raw_http(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("connect");
  }
  ~raw_http() { ::close(fd_); }
  raw_http(const raw_http&) = delete;
  raw_http& operator=(const raw_http&) = delete;

  /// Sends `request` and returns the status code and body of one response (0 on failure).
  std::pair<int, std::string> exchange(const std::string& request) {
    if (!send(request)) return {0, ""};
    return read_response();
  }

  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }

  /// True once the server has closed the connection (within the 5 s receive timeout); input is discarded.
  bool closed_by_server() {
    in_.clear();
    while (fill()) in_.clear();
    return errno != EAGAIN && errno != EWOULDBLOCK;
  }

  /// Reads the head of one response whose body does not follow (the answer to HEAD): its status code and
  /// Content-Length (0 on failure, -1 without one).
  std::pair<int, long> read_head_only() {
    std::size_t header_end;
    while ((header_end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return {0, 0};
    }
    const std::string head = in_.substr(0, header_end);
    in_.erase(0, header_end + 4);
    long length = -1;
    if (auto p = head.find("Content-Length: "); p != std::string::npos)
      length = std::stol(head.substr(p + 16));
    return {std::stoi(head.substr(9, 3)), length};
  }

  /// Reads one response: its status code and body (0 on failure).
  std::pair<int, std::string> read_response() {
    std::size_t header_end;
    while ((header_end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return {0, ""};
    }
    const std::string head = in_.substr(0, header_end);
    std::size_t length = 0;
    if (auto p = head.find("Content-Length: "); p != std::string::npos)
      length = std::stoul(head.substr(p + 16));
    while (in_.size() < header_end + 4 + length) {
      if (!fill()) return {0, ""};
    }
    std::string body = in_.substr(header_end + 4, length);
    in_.erase(0, header_end + 4 + length);
    return {std::stoi(head.substr(9, 3)), body};
  }

 private:
  bool fill() {
    char buf[4096];
    errno = 0;
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  int fd_;
  std::string in_;
};

class server_test : public ::testing::Test {
 protected:
  static chorus::config::node_config base_config() {
    chorus::config::node_config c;
    c.port = 0;
    c.node_id = "test-node";
    c.jwt_secret = "test-secret-that-is-at-least-32-bytes-long";
    c.io_threads = 2;
    return c;
  }

  void start(const chorus::config::node_config& c = base_config(),
             chorus::actors::http_handler* api = nullptr, std::function<std::string()> metrics = {}) {
    server_ = std::make_unique<chorus::net::server>(c, factory_, api, std::move(metrics));
    port_ = server_->start();
    ASSERT_NE(port_, 0);
  }

  std::unique_ptr<ws_client> connect(ws_client::options opts = {}) { return ws_client::connect(port_, opts); }

  void start_with_api(chorus::config::node_config c = base_config()) { start(c, &api_); }

  // Declared before the server: links the factory keeps must outlive it harmlessly, and so must replies
  // the API still holds.
  fake_factory factory_;
  fake_api api_;
  std::unique_ptr<chorus::net::server> server_;
  std::uint16_t port_ = 0;
};

TEST_F(server_test, healthz_reports_status_node_and_connections) {
  start();
  auto res = chorus::testing::http_get(port_, "/healthz");
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.content_type, "application/json");
  auto body = json::parse(res.body).as_object();
  EXPECT_EQ(body.at("status"), "ok");
  EXPECT_EQ(body.at("node"), "test-node");
  EXPECT_EQ(body.at("connections").to_number<int>(), 0);

  auto client = connect();
  ASSERT_NE(factory_.link(0), nullptr);
  body = json::parse(chorus::testing::http_get(port_, "/healthz?verbose=1").body).as_object();
  EXPECT_EQ(body.at("connections").to_number<int>(), 1);
  EXPECT_EQ(server_->stats().open_connections, 1u);
  EXPECT_GE(server_->stats().accepted_total, 3u);
}

TEST_F(server_test, metrics_serves_what_the_node_gives_it_each_time_then_its_own_counters) {
  std::atomic<int> calls = 0;  // called on an io thread
  start(base_config(), nullptr, [&calls] { return "chorus_calls " + std::to_string(++calls) + "\n"; });
  auto res = chorus::testing::http_get(port_, "/metrics");
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_TRUE(res.body.starts_with("chorus_calls 1\n")) << res.body;
  EXPECT_NE(res.body.find("\nchorus_connections_accepted_total 1\n"), std::string::npos) << res.body;
  EXPECT_NE(res.body.find("\n# TYPE chorus_slow_consumers_closed_total counter\n"
                          "chorus_slow_consumers_closed_total 0\n"),
            std::string::npos)
      << res.body;
  EXPECT_NE(res.body.find("\nchorus_reads_paused_total 0\n"), std::string::npos) << res.body;
  res = chorus::testing::http_get(port_, "/metrics");
  EXPECT_TRUE(res.body.starts_with("chorus_calls 2\n")) << res.body;
  EXPECT_NE(res.body.find("\nchorus_connections_accepted_total 2\n"), std::string::npos) << res.body;

  raw_http http(port_);
  auto [status, body] = http.exchange("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(status, 405);
  EXPECT_EQ(json::parse(body).at("error").at("code"), "method_not_allowed");
  EXPECT_EQ(calls, 2);
}

TEST_F(server_test, metrics_is_404_on_a_server_given_none) {
  start();
  auto res = chorus::testing::http_get(port_, "/metrics");
  EXPECT_EQ(res.status, 404u);
  EXPECT_EQ(json::parse(res.body).at("error").at("code"), "not_found");
}

TEST_F(server_test, unknown_target_is_404_with_json_error) {
  start();
  auto res = chorus::testing::http_get(port_, "/nope");
  EXPECT_EQ(res.status, 404u);
  auto body = json::parse(res.body).as_object();
  EXPECT_EQ(body.at("error").at("code"), "not_found");
  EXPECT_TRUE(body.at("error").at("message").is_string());
}

TEST_F(server_test, plain_get_on_ws_asks_for_an_upgrade) {
  start();
  auto res = chorus::testing::http_get(port_, "/ws");
  EXPECT_EQ(res.status, 426u);
  EXPECT_EQ(json::parse(res.body).at("error").at("code"), "upgrade_required");
}

TEST_F(server_test, websocket_upgrade_on_another_target_is_404) {
  start();
  try {
    connect(options_with_target("/other"));
    FAIL() << "upgrade on /other was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("404"), std::string::npos) << e.what();
  }
  EXPECT_EQ(factory_.opened(), 0u);
}

TEST_F(server_test, non_get_on_healthz_is_405) {
  start();
  raw_http http(port_);
  auto [status, body] = http.exchange("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(status, 405);
  EXPECT_EQ(json::parse(body).at("error").at("code"), "method_not_allowed");
}

TEST_F(server_test, head_gets_the_headers_of_get_without_a_body_and_the_connection_stays_in_step) {
  start();
  raw_http http(port_);
  for (const char* target : {"/healthz", "/nowhere"}) {
    ASSERT_TRUE(http.send(std::string("HEAD ") + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto [status, length] = http.read_head_only();
    EXPECT_EQ(status, std::string_view(target) == "/healthz" ? 200 : 404) << target;
    EXPECT_GT(length, 0) << "the length GET would have";
    // Had a body followed, this response would start in the middle of it.
    auto [next_status, body] = http.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(next_status, 200) << "after HEAD " << target;
    EXPECT_EQ(json::parse(body).at("status"), "ok");
  }
  // A request that cannot be read after a HEAD gets its whole answer, body included.
  ASSERT_TRUE(http.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(http.read_head_only().first, 200);
  auto [bad_status, bad_body] = http.exchange("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(bad_status, 400);
  EXPECT_FALSE(bad_body.empty());
}

TEST_F(server_test, keep_alive_connection_serves_several_requests) {
  start();
  raw_http http(port_);
  for (int i = 0; i < 3; ++i) {
    auto [status, body] = http.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(status, 200) << "request " << i;
    EXPECT_EQ(json::parse(body).at("status"), "ok");
  }
  auto [status, body] = http.exchange("GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status, 404);
}

TEST_F(server_test, upgrade_passes_bearer_token_and_remote) {
  start();
  auto with = connect({.bearer = "header.payload.sig", .target = "/ws?v=1", .receive_buffer_bytes = 0});
  ASSERT_NE(factory_.link(0), nullptr);
  auto without = connect();
  ASSERT_NE(factory_.link(1), nullptr);

  const auto a = factory_.info(0);
  const auto b = factory_.info(1);
  ASSERT_TRUE(a.bearer_token.has_value());
  EXPECT_EQ(*a.bearer_token, "header.payload.sig");
  EXPECT_FALSE(b.bearer_token.has_value());
  EXPECT_EQ(a.remote.rfind("127.0.0.1:", 0), 0u) << a.remote;
  EXPECT_NE(a.id, b.id);
}

TEST_F(server_test, echo_keeps_order_of_1000_frames) {
  start();
  auto client = connect();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(client->send_json({{"n", i}}));
  for (int i = 0; i < 1000; ++i) {
    auto obj = client->next();
    ASSERT_TRUE(obj) << "missing frame " << i;
    ASSERT_EQ(obj->at("n").to_number<int>(), i);
  }
}

TEST_F(server_test, burst_from_another_thread_arrives_in_order_and_coalesced) {
  auto cfg = base_config();
  cfg.send_queue_limit = 100000;
  start(cfg);
  auto client = connect();
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);

  constexpr int kFrames = 10000;
  std::thread pusher([&] {
    for (int i = 0; i < kFrames; ++i) {
      if (!link->push(frame("{\"seq\":" + std::to_string(i) + "}"), traffic::essential)) {
        ADD_FAILURE() << "push " << i << " refused";
        return;
      }
    }
  });
  for (int i = 0; i < kFrames; ++i) {
    auto obj = client->next();
    if (!obj) {
      ADD_FAILURE() << "missing seq " << i;
      break;
    }
    if (obj->at("seq").to_number<int>() != i) {
      ADD_FAILURE() << "expected seq " << i << ", got " << json::serialize(*obj);
      break;
    }
  }
  pusher.join();
  EXPECT_LT(client->frames_received(), static_cast<std::uint64_t>(kFrames));
  EXPECT_FALSE(client->close_code());
}

TEST_F(server_test, mixed_sizes_keep_content_and_order_across_batches) {
  auto cfg = base_config();
  cfg.send_queue_limit = 100000;
  start(cfg);
  auto client = connect();
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);

  // Short frames are copied into the batch, long ones sent in place; about 3 MB spans several writes.
  constexpr int kFrames = 2000;
  auto payload = [](int i) {
    return padded("i", i, i % 2 == 0 ? 3000 : 20 + static_cast<std::size_t>(i % 7));
  };
  std::thread pusher([&] {
    for (int i = 0; i < kFrames; ++i) EXPECT_TRUE(link->push(frame(payload(i)), traffic::essential));
  });
  for (int i = 0; i < kFrames; ++i) {
    auto obj = client->next();
    if (!obj) {
      ADD_FAILURE() << "missing frame " << i;
      break;
    }
    if (json::serialize(*obj) != payload(i)) {
      ADD_FAILURE() << "frame " << i << " differs";
      break;
    }
  }
  pusher.join();
}

TEST_F(server_test, message_longer_than_the_first_read_arrives_whole) {
  start();
  auto client = connect();
  // Over the server's small first read and over the client's 4 KiB fragments.
  const auto big = padded("big", 1, 50000);
  ASSERT_TRUE(client->send_text(big));
  auto obj = client->next();
  ASSERT_TRUE(obj);
  EXPECT_EQ(json::serialize(*obj), big);
}

TEST_F(server_test, oversize_message_closes_with_1009) {
  auto cfg = base_config();
  cfg.max_frame_bytes = 1024;
  start(cfg);
  auto client = connect();
  ASSERT_NE(factory_.link(0), nullptr);
  client->send_text(std::string(4000, 'a'));
  EXPECT_EQ(client->wait_closed(), close_code::too_big);
  ASSERT_TRUE(factory_.wait_closed(1));
}

TEST_F(server_test, binary_frame_reaches_session_and_connection_stays_open) {
  start();
  auto client = connect();
  ASSERT_TRUE(client->send_binary("\x01\x02\x03"));
  ASSERT_TRUE(factory_.wait_binary(1));
  ASSERT_TRUE(client->send_json({{"still", "open"}}));
  auto obj = client->next();
  ASSERT_TRUE(obj);
  EXPECT_EQ(obj->at("still"), "open");
  EXPECT_EQ(factory_.closed_reasons().size(), 0u);
}

class session_close_test : public server_test, public ::testing::WithParamInterface<std::uint16_t> {};

TEST_P(session_close_test, close_from_session_reaches_client_after_queued_frames) {
  start();
  auto client = connect();
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);
  std::thread([&] {
    EXPECT_TRUE(link->push(frame(R"({"last":true})"), traffic::essential));
    link->close(GetParam(), "bye");
    EXPECT_FALSE(link->push(frame(R"({"after":true})"), traffic::essential));
  }).join();
  auto obj = client->next();
  ASSERT_TRUE(obj);
  EXPECT_TRUE(obj->contains("last"));
  EXPECT_EQ(client->wait_closed(), GetParam());
  ASSERT_TRUE(factory_.wait_closed(1));
}

INSTANTIATE_TEST_SUITE_P(codes, session_close_test,
                         ::testing::Values(close_code::slow_consumer, close_code::unauthorized));

TEST_F(server_test, slow_consumer_that_never_reads_is_cut_off) {
  start();
  auto client = connect(options_with_receive_buffer(4096));
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);

  // Up to 40 MB of 4 KB essential frames, faster than a second; the client reads none of them. What the
  // socket buffers do not take stays queued until the queue reaches four times send_queue_limit.
  bool refused = false;
  for (int i = 0; i < 10000 && !refused; ++i)
    refused = !link->push(frame(padded("n", i, 4096)), traffic::essential);
  EXPECT_TRUE(refused) << "40 MB were queued for a client that reads nothing";

  // Only the server's close deadline can end this connection: the client still is not reading.
  ASSERT_TRUE(factory_.wait_closed(1, 10s));
  EXPECT_FALSE(link->push(frame("{}"), traffic::essential));
  EXPECT_TRUE(client->wait_closed(10s).has_value());
  EXPECT_EQ(server_->stats().slow_consumers_closed, 1u);
}

TEST_F(server_test, a_burst_past_the_queue_limit_reaches_a_client_that_reads) {
  auto cfg = base_config();
  cfg.send_queue_limit = 16;
  start(cfg);
  auto client = connect();
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);

  // What a commit that waited for the database releases: many frames at once, faster than one write.
  constexpr int kFrames = 60;  // past the limit, within four times it
  for (int i = 0; i < kFrames; ++i)
    ASSERT_TRUE(link->push(frame("{\"seq\":" + std::to_string(i) + "}"), traffic::essential)) << "push " << i;
  for (int i = 0; i < kFrames; ++i) {
    auto obj = client->next();
    ASSERT_TRUE(obj) << "missing seq " << i;
    ASSERT_EQ(obj->at("seq").to_number<int>(), i);
  }
  EXPECT_FALSE(client->close_code());
  EXPECT_EQ(factory_.closed_reasons().size(), 0u);
  EXPECT_EQ(server_->stats().slow_consumers_closed, 0u);
}

TEST_F(server_test, a_client_whose_write_waits_a_second_is_cut_off_at_the_queue_limit) {
  auto cfg = base_config();
  cfg.send_queue_limit = 16;
  start(cfg);
  auto client = connect(options_with_receive_buffer(4096));
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);

  // 15 MB the client does not read: the socket buffers take a few MB, the rest waits behind a write that
  // cannot finish. Queued past the limit, but not yet for a second, so nothing is refused.
  constexpr int kFrames = 60;
  for (int i = 0; i < kFrames; ++i)
    ASSERT_TRUE(link->push(frame(padded("n", i, 256 * 1024)), traffic::essential)) << "push " << i;
  EXPECT_EQ(factory_.closed_reasons().size(), 0u);

  std::this_thread::sleep_for(1500ms);  // the write in flight has now waited more than a second
  EXPECT_FALSE(link->push(frame(R"({"late":1})"), traffic::essential));
  ASSERT_TRUE(factory_.wait_closed(1, 10s));
  const auto reason = factory_.closed_reasons().at(0);
  EXPECT_NE(reason.find("4008"), std::string::npos) << reason;
  EXPECT_TRUE(client->wait_closed(10s).has_value());
  EXPECT_EQ(server_->stats().slow_consumers_closed, 1u);
}

TEST_F(server_test, a_session_that_asks_for_no_more_frames_gets_none_until_it_resumes_reading) {
  factory_.pause_every(3);
  start();
  auto client = connect();
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);
  auto echoes = [&client](int from, int to) {
    for (int i = from; i < to; ++i) {
      auto echo = client->next();
      ASSERT_TRUE(echo) << "missing echo " << i;
      EXPECT_EQ(echo->at("n").to_number<int>(), i);
    }
  };
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->send_json({{"n", i}}));
  echoes(0, 3);
  EXPECT_FALSE(client->next(300ms)) << "the server read past the frame that asked it to stop";
  EXPECT_EQ(server_->stats().reads_paused, 1u);

  link->resume_reading();
  echoes(3, 5);
  link->resume_reading();  // reading was not stopped: nothing changes
  ASSERT_TRUE(client->send_json({{"n", 5}}));
  echoes(5, 6);
  EXPECT_EQ(factory_.closed_reasons().size(), 0u);
}

TEST_F(server_test, a_connection_is_not_idle_while_its_session_keeps_it_from_being_read) {
  factory_.pause_every(1);
  auto cfg = base_config();
  cfg.idle_timeout_ms = 300;
  start(cfg);
  auto client = connect();
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(client->send_json({{"n", 0}}));
  ASSERT_TRUE(client->next());
  // Five idle timeouts with reads paused: the server reads nothing, so it cannot see a pong; the client
  // is fine and keeps its connection.
  ASSERT_TRUE(client->send_json({{"n", 1}}));
  EXPECT_FALSE(client->next(1500ms));
  EXPECT_FALSE(client->close_code());
  EXPECT_EQ(factory_.closed_reasons().size(), 0u);
  link->resume_reading();
  auto echo = client->next();
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->at("n").to_number<int>(), 1);
  // Reading again, the idle timeout applies again: a client that stops reading is closed.
  link->resume_reading();
  ASSERT_TRUE(factory_.wait_closed(1, 5s)) << "a silent client outlived its idle timeout";
}

TEST_F(server_test, a_connection_that_stopped_reading_still_closes_and_tells_its_session) {
  factory_.pause_every(1);
  start();
  // Closed by the server: the close handshake ends the session without the read loop.
  auto first = connect();
  auto first_link = factory_.link(0);
  ASSERT_NE(first_link, nullptr);
  ASSERT_TRUE(first->send_json({{"n", 0}}));
  ASSERT_TRUE(first->next());
  first_link->close(close_code::going_away, "bye");
  EXPECT_EQ(first->wait_closed(5s), std::optional<std::uint16_t>(close_code::going_away));
  ASSERT_TRUE(factory_.wait_closed(1));

  // Closed by the client while nothing reads its socket: noticed once the session reads on.
  auto second = connect();
  auto second_link = factory_.link(1);
  ASSERT_NE(second_link, nullptr);
  ASSERT_TRUE(second->send_json({{"n", 0}}));
  ASSERT_TRUE(second->next());
  second->close();
  EXPECT_FALSE(factory_.wait_closed(2, 300ms));
  second_link->resume_reading();
  ASSERT_TRUE(factory_.wait_closed(2));
  EXPECT_EQ(server_->stats().open_connections, 0u);
}

TEST_F(server_test, droppable_frames_are_dropped_first_and_essential_ones_still_arrive) {
  auto cfg = base_config();
  cfg.send_queue_limit = 16;
  start(cfg);
  auto client = connect(options_with_receive_buffer(4096));
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);

  // Push droppables until every push has been refused for 100 ms: the write in flight is then stuck
  // behind full socket buffers, so the queue stays full of droppables and cannot drain under the test.
  int pushed = 0;
  bool dropped = false;
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  auto last_accepted = std::chrono::steady_clock::now();
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    ASSERT_LT(now, give_up) << "the queue never stayed full";
    if (link->push(frame(padded("d", pushed, 4096)), traffic::droppable)) {
      ++pushed;
      last_accepted = now;
    } else {
      dropped = true;
      if (now - last_accepted > 100ms) break;
    }
  }
  ASSERT_TRUE(dropped);
  EXPECT_FALSE(link->push(frame(R"({"d":-1})"), traffic::droppable));
  ASSERT_TRUE(link->push(frame(R"({"marker":1})"), traffic::essential));

  int droppables_seen = 0;
  auto marker = client->next_where(
      [&](const json::object& o) {
        if (o.contains("d")) ++droppables_seen;
        return o.contains("marker");
      },
      10s);
  ASSERT_TRUE(marker);
  EXPECT_LT(droppables_seen, pushed);
  EXPECT_FALSE(client->close_code());
  ASSERT_TRUE(client->send_json({{"alive", true}}));
  EXPECT_TRUE(client->next_where([](const json::object& o) { return o.contains("alive"); }));
}

TEST_F(server_test, keep_alive_pings_keep_a_reading_client_connected) {
  auto cfg = base_config();
  cfg.idle_timeout_ms = 1000;
  start(cfg);
  auto client = connect();
  ASSERT_NE(factory_.link(0), nullptr);
  // Silent for three idle timeouts, but reading, so Beast answers the server's pings.
  EXPECT_FALSE(client->next(3s));
  EXPECT_FALSE(client->close_code());
  ASSERT_TRUE(client->send_json({{"ping", 1}}));
  EXPECT_TRUE(client->next());
  EXPECT_EQ(factory_.closed_reasons().size(), 0u);
}

TEST_F(server_test, idle_client_that_does_not_answer_pings_is_closed) {
  auto cfg = base_config();
  cfg.idle_timeout_ms = 500;
  start(cfg);
  auto client = connect();
  ASSERT_NE(factory_.link(0), nullptr);
  // The client does not read, so it never answers a ping.
  ASSERT_TRUE(factory_.wait_closed(1, 5s));
  EXPECT_EQ(factory_.closed_reasons().at(0), "idle timeout");
  EXPECT_TRUE(client->wait_closed().has_value());
}

TEST_F(server_test, stop_closes_every_connection_with_1001) {
  start();
  std::vector<std::unique_ptr<ws_client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(connect());
    ASSERT_NE(factory_.link(static_cast<std::size_t>(i)), nullptr);
  }
  // stop() waits for the close handshakes, which the clients complete here while reading.
  auto stopped = std::async(std::launch::async, [&] { return server_->stop(); });
  for (auto& c : clients) EXPECT_EQ(c->wait_closed(), close_code::going_away);
  ASSERT_EQ(stopped.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(stopped.get(), 0u);
  EXPECT_TRUE(factory_.wait_closed(3));
  EXPECT_FALSE(factory_.link(0)->push(frame("{}"), traffic::essential));
}

TEST_F(server_test, stop_accepting_refuses_new_connections_and_keeps_the_open_ones) {
  start();
  auto client = connect();
  ASSERT_NE(factory_.link(0), nullptr);
  server_->stop_accepting();
  // The close is posted to the acceptor's strand: poll until a new connection is refused.
  bool refused = false;
  for (int i = 0; i < 100 && !refused; ++i) {
    try {
      chorus::testing::http_get(port_, "/healthz");
    } catch (const std::runtime_error&) {
      refused = true;  // http_get throws when it cannot connect
    }
    if (!refused) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused) << "the node still accepts connections";
  ASSERT_TRUE(factory_.link(0)->push(frame("{\"still\":\"here\"}"), traffic::essential));
  auto got = client->next();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->at("still"), "here");
}

TEST_F(server_test, restart_sessions_closes_every_websocket_with_1012_and_keeps_serving) {
  start();
  auto first = connect();
  auto second = connect();
  ASSERT_NE(factory_.link(1), nullptr);
  EXPECT_EQ(server_->restart_sessions(), 2u);
  EXPECT_EQ(first->wait_closed(), close_code::service_restart);
  EXPECT_EQ(second->wait_closed(), close_code::service_restart);
  // Clients come back to the same node.
  auto again = connect();
  EXPECT_NE(factory_.link(2), nullptr);
  EXPECT_EQ(chorus::testing::http_get(port_, "/healthz").status, 200u);
}

TEST_F(server_test, stop_cuts_off_clients_that_do_not_answer_the_close) {
  auto cfg = base_config();
  cfg.shutdown_timeout_ms = 300;
  start(cfg);
  auto client = connect();
  ASSERT_NE(factory_.link(0), nullptr);
  // The client does not read, so it never answers the close; stop() gives up after the timeout.
  EXPECT_EQ(server_->stop(), 1u);
  EXPECT_TRUE(factory_.wait_closed(1));
}

TEST_F(server_test, max_connections_refuses_with_503) {
  auto cfg = base_config();
  cfg.max_connections = 2;
  start(cfg);
  auto a = connect();
  auto b = connect();
  ASSERT_NE(factory_.link(1), nullptr);
  try {
    connect();
    FAIL() << "third connection was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("503"), std::string::npos) << e.what();
  }
  EXPECT_EQ(factory_.opened(), 2u);

  // A slot is free again once a connection is gone.
  a->close();
  ASSERT_TRUE(factory_.wait_closed(1));
  EXPECT_NO_THROW(connect());
}

TEST_F(server_test, refused_connections_that_send_nothing_are_closed_within_a_second_or_two) {
  auto cfg = base_config();
  cfg.max_connections = 1;
  cfg.idle_timeout_ms = 60000;  // what an admitted connection gets to send its request
  start(cfg);
  auto admitted = connect();
  ASSERT_NE(factory_.link(0), nullptr);
  // Sockets over the limit that never send a request: each holds a descriptor until the server closes it.
  std::vector<std::unique_ptr<raw_http>> silent;
  for (int i = 0; i < 20; ++i) silent.push_back(std::make_unique<raw_http>(port_));
  const auto start = std::chrono::steady_clock::now();
  for (auto& s : silent) EXPECT_TRUE(s->closed_by_server());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  EXPECT_EQ(factory_.opened(), 1u);
  ASSERT_TRUE(admitted->send_json({{"n", 7}}));
  auto echo = admitted->next();
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->at("n").to_number<int>(), 7);
}

TEST_F(server_test, wait_for_signal_returns_on_sigterm) {
  start();
  std::raise(SIGTERM);  // handled by the server's signal set, installed by start()
  auto waited = std::async(std::launch::async, [&] { server_->wait_for_signal(); });
  EXPECT_EQ(waited.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(server_->stop(), 0u);
}

TEST_F(server_test, wait_for_signal_returns_when_stopped) {
  start();
  auto waited = std::async(std::launch::async, [&] { server_->wait_for_signal(); });
  EXPECT_EQ(server_->stop(), 0u);
  EXPECT_EQ(waited.wait_for(5s), std::future_status::ready);
}

TEST_F(server_test, links_outliving_the_server_refuse_pushes) {
  auto cfg = base_config();
  cfg.shutdown_timeout_ms = 200;
  start(cfg);
  auto client = connect();
  auto link = factory_.link(0);
  ASSERT_NE(link, nullptr);
  server_->stop();
  server_.reset();
  EXPECT_FALSE(link->push(frame("{}"), traffic::essential));
  link->close(close_code::normal, "late");
  EXPECT_TRUE(factory_.wait_closed(1));
}

// ---- the HTTP API under /api/ ----

json::object parse_object(const std::string& text) {
  auto v = json::parse(text);
  EXPECT_TRUE(v.is_object()) << text;
  return v.is_object() ? v.as_object() : json::object{};
}

std::string error_code_of(const std::string& body) {
  auto o = parse_object(body);
  if (!o.contains("error")) return "(no error in " + body + ")";
  EXPECT_TRUE(o.at("error").at("message").is_string()) << body;
  return std::string(o.at("error").at("code").as_string());
}

TEST_F(server_test, api_request_fields_arrive_as_sent) {
  start_with_api();
  auto res = http_call(
      port_, "PATCH", "/api/v1/rooms/r%201?limit=5&before=x%2Fy", R"({"topic":"hi"})",
      {{"Content-Type", "application/json; charset=utf-8"}, {"Authorization", "Bearer abc.def.ghi"}});
  ASSERT_EQ(res.status, 200u) << res.body;
  EXPECT_EQ(res.headers["content-type"], "application/json");
  EXPECT_EQ(res.headers["content-length"], std::to_string(res.body.size()));

  ASSERT_TRUE(api_.wait_requests(1));
  const auto r = api_.requests().at(0);
  EXPECT_EQ(r.method, "PATCH");
  EXPECT_EQ(r.path, "/api/v1/rooms/r%201");
  EXPECT_EQ(r.query, "limit=5&before=x%2Fy");
  EXPECT_EQ(r.body, R"({"topic":"hi"})");
  EXPECT_EQ(r.content_type, "application/json; charset=utf-8");
  ASSERT_TRUE(r.bearer_token.has_value());
  EXPECT_EQ(*r.bearer_token, "abc.def.ghi");
  EXPECT_EQ(r.remote_ip, "127.0.0.1");
  EXPECT_EQ(res.body, fake_api::echo(r));
}

TEST_F(server_test, api_request_without_query_body_or_token_has_empty_fields) {
  start_with_api();
  auto res = http_call(port_, "GET", "/api/v1/users/me", {}, {{"Authorization", "Basic dXNlcjpwdw=="}});
  ASSERT_EQ(res.status, 200u) << res.body;
  ASSERT_TRUE(api_.wait_requests(1));
  const auto r = api_.requests().at(0);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/api/v1/users/me");
  EXPECT_EQ(r.query, "");
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.content_type, "");
  EXPECT_FALSE(r.bearer_token.has_value());
  // Only /api/ and below is the API.
  EXPECT_EQ(http_call(port_, "GET", "/api").status, 404u);
  EXPECT_EQ(http_call(port_, "GET", "/apis/x").status, 404u);
  EXPECT_EQ(api_.requests().size(), 1u);
}

TEST_F(server_test, api_reply_later_from_another_thread_with_extra_headers) {
  start_with_api();
  api_.hold(true);
  auto pending =
      std::async(std::launch::async, [&] { return http_call(port_, "POST", "/api/v1/auth/login", "{}"); });
  ASSERT_TRUE(api_.wait_requests(1));
  EXPECT_EQ(pending.wait_for(0s), std::future_status::timeout) << "answered before the handler replied";

  std::thread([reply = api_.held(0)] {
    reply(http_response{429,
                        R"({"error":{"code":"rate_limited","message":"slow down"}})",
                        {{"Retry-After", "3"}, {"X-Chorus-Test", "yes"}}});
  }).join();
  ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
  auto res = pending.get();
  EXPECT_EQ(res.status, 429u);
  EXPECT_EQ(res.headers["retry-after"], "3");
  EXPECT_EQ(res.headers["x-chorus-test"], "yes");
  EXPECT_EQ(res.headers["content-type"], "application/json");
  EXPECT_EQ(error_code_of(res.body), "rate_limited");
}

TEST_F(server_test, api_empty_reply_has_no_content_type_and_bad_headers_are_dropped) {
  start_with_api();
  api_.hold(true);
  auto pending =
      std::async(std::launch::async, [&] { return http_call(port_, "DELETE", "/api/v1/users/me"); });
  ASSERT_TRUE(api_.wait_requests(1));
  api_.held(0)(http_response{204,
                             {},
                             {{"Content-Length", "99"},
                              {"X-Injected", "a\r\nSet-Cookie: evil=1"},
                              {"Bad Name", "x"},
                              {"X-Fine", "ok"}}});
  auto res = pending.get();
  EXPECT_EQ(res.status, 204u);
  EXPECT_EQ(res.body, "");
  EXPECT_EQ(res.headers.count("content-type"), 0u);
  EXPECT_EQ(res.headers.count("x-injected"), 0u);
  EXPECT_EQ(res.headers.count("set-cookie"), 0u);
  EXPECT_EQ(res.headers["x-fine"], "ok");
}

TEST_F(server_test, api_keep_alive_serves_several_requests_in_order) {
  start_with_api();
  http_connection conn(port_);
  for (int i = 0; i < 5; ++i) {
    const auto path = "/api/v1/n/" + std::to_string(i);
    auto res = conn.call("POST", path, "{\"i\":" + std::to_string(i) + "}");
    ASSERT_EQ(res.status, 200u) << i;
    auto o = parse_object(res.body);
    EXPECT_EQ(o.at("path").as_string(), path);
    EXPECT_EQ(o.at("body").as_string(), "{\"i\":" + std::to_string(i) + "}");
  }
  EXPECT_EQ(conn.call("GET", "/healthz").status, 200u);
  EXPECT_EQ(conn.call("GET", "/api/v1/last").status, 200u);
  EXPECT_EQ(api_.requests().size(), 6u);
}

TEST_F(server_test, api_next_pipelined_request_is_read_only_after_the_reply) {
  start_with_api();
  api_.hold(true);
  raw_http http(port_);
  ASSERT_TRUE(http.send("GET /api/one HTTP/1.1\r\nHost: x\r\n\r\nGET /api/two HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(api_.wait_requests(1));
  EXPECT_EQ(api_.requests().size(), 1u) << "the second request was handled before the first was answered";
  api_.held(0)(http_response{200, R"({"n":1})", {}});
  auto [s1, b1] = http.read_response();
  EXPECT_EQ(s1, 200);
  EXPECT_EQ(b1, R"({"n":1})");
  ASSERT_TRUE(api_.wait_requests(2));
  EXPECT_EQ(api_.requests().at(1).path, "/api/two");
  api_.held(1)(http_response{200, R"({"n":2})", {}});
  auto [s2, b2] = http.read_response();
  EXPECT_EQ(s2, 200);
  EXPECT_EQ(b2, R"({"n":2})");
}

TEST_F(server_test, api_body_over_max_body_bytes_is_413_and_never_reaches_the_handler) {
  auto cfg = base_config();
  cfg.max_body_bytes = 1024;
  start_with_api(cfg);
  auto at_limit = http_call(port_, "POST", "/api/v1/x", std::string(1024, 'a'));
  EXPECT_EQ(at_limit.status, 200u);
  ASSERT_TRUE(api_.wait_requests(1));

  auto res = http_call(port_, "POST", "/api/v1/x", std::string(1025, 'a'));
  EXPECT_EQ(res.status, 413u);
  EXPECT_EQ(error_code_of(res.body), "payload_too_large");
  EXPECT_EQ(res.headers["connection"], "close");
  // Far more than the server will read: the answer still arrives.
  auto huge = http_call(port_, "POST", "/api/v1/x", std::string(8 * 1024 * 1024, 'b'));
  EXPECT_EQ(huge.status, 413u);
  EXPECT_EQ(api_.requests().size(), 1u);
  EXPECT_EQ(http_call(port_, "GET", "/healthz").status, 200u);
}

TEST_F(server_test, api_chunked_body_over_the_limit_is_413) {
  auto cfg = base_config();
  cfg.max_body_bytes = 100;
  start_with_api(cfg);
  raw_http http(port_);
  auto [status, body] = http.exchange(
      "POST /api/v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "40\r\n" +
      std::string(64, 'a') + "\r\n40\r\n" + std::string(64, 'a') + "\r\n0\r\n\r\n");
  EXPECT_EQ(status, 413);
  EXPECT_EQ(error_code_of(body), "payload_too_large");
  EXPECT_TRUE(http.closed_by_server());
  EXPECT_EQ(api_.requests().size(), 0u);
}

TEST_F(server_test, expect_100_continue_is_answered_before_the_body) {
  auto cfg = base_config();
  cfg.max_body_bytes = 100;
  start_with_api(cfg);
  raw_http http(port_);
  auto [interim, none] = http.exchange(
      "POST /api/v1/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(interim, 100);
  auto [status, body] = http.exchange("{}");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(parse_object(body).at("body"), "{}");

  raw_http refused(port_);
  auto [too_big, err] = refused.exchange(
      "POST /api/v1/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n");
  EXPECT_EQ(too_big, 413);
  EXPECT_EQ(error_code_of(err), "payload_too_large");
}

TEST_F(server_test, api_without_handler_is_404_json) {
  start();
  auto res = http_call(port_, "POST", "/api/v1/auth/login", "{}");
  EXPECT_EQ(res.status, 404u);
  EXPECT_EQ(res.headers["content-type"], "application/json");
  EXPECT_EQ(error_code_of(res.body), "not_found");
}

TEST_F(server_test, malformed_request_line_is_400_json_and_closes) {
  start_with_api();
  raw_http http(port_);
  auto [status, body] = http.exchange("THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(error_code_of(body), "bad_request");
  EXPECT_TRUE(http.closed_by_server());
  EXPECT_EQ(api_.requests().size(), 0u);
}

TEST_F(server_test, api_connection_closed_before_the_reply_is_harmless) {
  start_with_api();
  api_.hold(true);
  {
    raw_http http(port_);
    ASSERT_TRUE(http.send("POST /api/v1/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"));
    ASSERT_TRUE(api_.wait_requests(1));
  }  // the client is gone
  std::thread([reply = api_.held(0)] { reply(http_response{200, "{}", {}}); }).join();
  api_.hold(false);
  EXPECT_EQ(http_call(port_, "GET", "/api/v1/after").status, 200u);
}

TEST_F(server_test, api_reply_after_the_server_is_gone_is_dropped) {
  auto cfg = base_config();
  cfg.shutdown_timeout_ms = 200;
  start_with_api(cfg);
  api_.hold(true);
  raw_http http(port_);
  ASSERT_TRUE(http.send("GET /api/v1/slow HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(api_.wait_requests(1));
  // The connection waits for its answer, so stop() cuts it off at the deadline.
  EXPECT_EQ(server_->stop(), 1u);
  server_.reset();
  auto reply = api_.held(0);
  reply(http_response{200, "{}", {}});
  reply(http_response{200, "{}", {}});  // a second call is ignored too
}

TEST_F(server_test, api_reply_dropped_unanswered_becomes_500) {
  start_with_api();
  api_.drop(true);
  auto res = http_call(port_, "GET", "/api/v1/x");
  EXPECT_EQ(res.status, 500u);
  EXPECT_EQ(error_code_of(res.body), "internal");
}

TEST_F(server_test, api_stop_lets_a_pending_reply_finish_then_closes) {
  start_with_api();
  api_.hold(true);
  http_connection conn(port_);
  auto pending = std::async(std::launch::async, [&] { return conn.call("GET", "/api/v1/x"); });
  ASSERT_TRUE(api_.wait_requests(1));
  auto stopped = std::async(std::launch::async, [&] { return server_->stop(); });
  api_.held(0)(http_response{200, R"({"done":true})", {}});
  auto res = pending.get();
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(parse_object(res.body).at("done"), true);
  // Nothing had to be cut off: the connection closed once its answer was written.
  ASSERT_EQ(stopped.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(stopped.get(), 0u);
  EXPECT_TRUE(conn.wait_closed(5s));
}

TEST_F(server_test, idle_keep_alive_http_connection_is_closed_after_idle_timeout) {
  auto cfg = base_config();
  cfg.idle_timeout_ms = 300;
  start_with_api(cfg);
  http_connection conn(port_);
  EXPECT_EQ(conn.call("GET", "/api/v1/x").status, 200u);
  const auto before = std::chrono::steady_clock::now();
  EXPECT_TRUE(conn.wait_closed(5s));
  EXPECT_GE(std::chrono::steady_clock::now() - before, 250ms);
}

TEST_F(server_test, http_connections_count_toward_max_connections) {
  auto cfg = base_config();
  cfg.max_connections = 1;
  start_with_api(cfg);
  http_connection first(port_);
  EXPECT_EQ(first.call("GET", "/api/v1/x").status, 200u);
  auto refused = http_call(port_, "GET", "/api/v1/x");
  EXPECT_EQ(refused.status, 503u);
  EXPECT_EQ(error_code_of(refused.body), "unavailable");
}

}  // namespace
