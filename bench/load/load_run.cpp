// The load run: connection set-up, token pacing of senders and churn, measurement windows, drain, teardown.
#include "bench/load/load_run.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actors/jwt.hpp"
#include "bench/load/client_connection.hpp"
#include "bench/load/frame_scan.hpp"
#include "bench/load/histogram.hpp"
#include "bench/load/process_stats.hpp"

namespace chorus::bench {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Reply ids: joins count up from 1, sends from here, so a reply's kind is known from its id alone.
constexpr std::int64_t kSendIdBase = 1'000'000;
// The pacer wakes for the next scheduled message, but at least every kMaxTick (to notice the end of a
// window) and at most every kMinTick: 1 ms, because on a two-core machine each wake-up of the generator is
// CPU the node and PostgreSQL do not get (at 20,000 sends/s it used 0.46 of a core with 10k wake-ups/s,
// 0.41 with 1k). A message waits up to kMinTick for its tick; it is stamped with its scheduled time, so
// that wait counts as latency.
constexpr std::uint64_t kMaxTickNs = 1'000'000;
constexpr std::uint64_t kMinTickNs = 1'000'000;
constexpr auto kPoll = 10ms;     // how often the run checks its phase conditions
constexpr auto kSettle = 1s;     // idle: let the server finish allocating before reading its RSS
constexpr auto kCloseWait = 5s;  // teardown: how long to wait for normal closes before cutting
constexpr std::int64_t kTokenTtl = 24 * 3600;
constexpr std::size_t kMaxErrorKinds = 32;  // distinct error strings kept; the rest are lumped together

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

std::uint64_t seconds_to_ns(double s) {
  return static_cast<std::uint64_t>(s * 1e9);
}

struct room_slot {
  std::uint32_t room = 0;
  std::uint64_t last_seq = 0;
  bool joined = false;
};

/// What the run knows about one long-lived connection.
struct member {
  std::shared_ptr<client_connection> link;
  std::vector<room_slot> rooms;
  std::int64_t send_room = -1;  ///< the room it sends to, if it is a sender
  std::int64_t next_send_id = kSendIdBase;
  std::uint64_t connect_started_ns = 0;
  std::uint32_t pending_joins = 0;
  /// When its sends left: (stamp of the newest send in a write, when that write was made), oldest first.
  /// An ack pops the writes before its own; with --write-tick-ms a send waits in the connection for its
  /// tick, and the ack latency from its write leaves that wait out.
  std::deque<std::pair<std::uint64_t, std::uint64_t>> writes;
  std::uint64_t held_newest = 0;  ///< stamp of the newest send held for the next tick (0: none held)
  bool open = false;
  bool ended = false;
  bool join_failed = false;
};

/// A churn connection: upgrade, join one room, close.
struct churn_slot {
  std::shared_ptr<client_connection> link;
  std::uint64_t started_ns = 0;
  bool busy = false;
  bool completed = false;
  bool counted = false;  ///< started inside the measured window
};

/// Counters for one measured window; reset at every step.
struct window_counters {
  std::uint64_t sent = 0, acknowledged = 0, delivered = 0, expected = 0, received_in_window = 0;
  std::uint64_t disconnects = 0, seq_gaps = 0, seq_out_of_order = 0, max_send_queue = 0;
  std::uint64_t max_pacer_lag_ns = 0;  ///< how late the pacer woke at worst: the generator's own stalls
  std::uint64_t churn_attempted = 0, churn_completed = 0, churn_failed = 0;
  std::vector<std::uint64_t> delivered_by_url;  ///< window deliveries by the receiver's --url (several only)
  std::map<std::string, std::uint64_t> errors;
};

class load_run final : public connection_listener {
 public:
  explicit load_run(const scenario& s) : s_(s), ioc_(1), pacer_(ioc_) {
    report_.settings = s;
    interactive_ = !s.json && isatty(STDERR_FILENO);
  }

  run_report run() {
    const double cpu_start = cpu_seconds();
    const auto wall_start = now_ns();
    if (prepare() && connect_all() && join_all()) {
      if (s_.chatting() || s_.churn_rate > 0) {
        run_steps();
      } else {
        hold_idle();
      }
    }
    record_memory_after();
    teardown();
    const double wall = static_cast<double>(now_ns() - wall_start) / 1e9;
    report_.generator_cpu = wall > 0 ? (cpu_seconds() - cpu_start) / wall : 0;
    if (interactive_) std::fprintf(stderr, "\r\033[K");
    return std::move(report_);
  }

  // --- connection_listener: everything below runs on the io thread -------------------------------------

  void on_open(std::uint32_t id) override {
    if (id >= s_.connections) return churn_open(id - s_.connections);
    auto& m = members_[id];
    m.open = true;
    ++open_;
    --in_flight_;
    connect_hist_.record(now_ns() - m.connect_started_ns);
    last_open_ns_ = now_ns();
    sample_memory();
    launch_more();
  }

  void on_frame(std::uint32_t id, std::string_view payload) override {
    const auto now = now_ns();
    if (pacer_running_ && pacing_ && now >= pacer_due_ns_ && !pace(now)) pacer_due_ns_ = UINT64_MAX;
    for_each_line(payload, [&](std::string_view line) {
      const auto sc = scan_line(line, s_.room_prefix);
      switch (sc.kind) {
        case line_kind::message:
          on_message(id, sc, now);
          break;
        case line_kind::send_ack:
          on_ack(id, sc, now);
          break;
        case line_kind::ignorable:
          if (!hello_seen_ && line.starts_with(R"({"ev":"hello")")) read_hello(line);
          break;
        default:
          slow_path(id, line, now);
      }
    });
  }

  void on_closed(std::uint32_t id, std::uint16_t code, std::string_view what, bool was_open) override {
    if (id >= s_.connections) return churn_closed(id - s_.connections, what);
    auto& m = members_[id];
    m.ended = true;
    ++ended_;
    if (m.pending_joins > 0) {  // their replies will never come
      joins_done_ += m.pending_joins;
      joins_in_flight_ -= m.pending_joins;
      m.pending_joins = 0;
      issue_joins();
    }
    if (was_open) {
      m.open = false;
      --open_;
      if (!shutting_down_) {
        ++report_.close_codes[code];
        ++report_.disconnects;
        ++window_.disconnects;
        count_error(errors_, "closed_" + std::to_string(code));
      }
    } else {
      --in_flight_;
      ++failed_;
      if (!shutting_down_) count_error(report_.setup_errors, "connect: " + std::string(what));
      launch_more();
    }
  }

 private:
  // --- set-up ----------------------------------------------------------------------------------------

  bool prepare() {
    for (const auto& u : s_.urls) {
      tcp::endpoint ep;
      std::string error;
      if (!resolve_endpoint(ioc_, u.host, u.port, ep, error)) {
        report_.aborted = error;
        return false;
      }
      endpoints_.push_back(ep);
    }
    const auto now_s = static_cast<std::int64_t>(std::time(nullptr));
    members_.resize(s_.connections);
    tokens_.reserve(s_.connections);
    for (std::uint32_t i = 0; i < s_.connections; ++i) {
      tokens_.push_back(
          actors::jwt::mint(s_.secret, std::string(kUserPrefix) + std::to_string(i), now_s, kTokenTtl));
    }
    // Member slot k of room r goes to connection (r * members + k) mod connections: rooms are contiguous
    // blocks of connections, and a run with more slots than connections puts a connection in several rooms.
    room_members_.assign(s_.rooms, 0);
    for (std::uint64_t slot = 0; slot < std::uint64_t{s_.rooms} * s_.members_per_room; ++slot) {
      const auto room = static_cast<std::uint32_t>(slot / s_.members_per_room);
      members_[slot % s_.connections].rooms.push_back(room_slot{room, 0, false});
    }
    // Sender j sends to room j mod rooms, as its (j / rooms)-th member: senders spread evenly over rooms.
    for (std::uint32_t j = 0; j < s_.senders; ++j) {
      const std::uint64_t room = j % s_.rooms;
      const std::uint64_t slot = room * s_.members_per_room + j / s_.rooms;
      const auto conn = static_cast<std::uint32_t>(slot % s_.connections);
      members_[conn].send_room = static_cast<std::int64_t>(room);
      senders_.push_back(conn);
    }
    if (s_.churn_rate > 0) {
      churn_.resize(s_.churn_concurrency);
      for (std::uint32_t i = 0; i < s_.churn_concurrency; ++i) {
        churn_tokens_.push_back(actors::jwt::mint(s_.secret, "c" + std::to_string(i), now_s, kTokenTtl));
        free_churn_.push_back(s_.churn_concurrency - 1 - i);
      }
    }
    const std::size_t pad = s_.message_bytes;
    padding_.assign(pad, 'x');
    report_.connect.requested = s_.connections;
    if (s_.memory_pid() > 0) {
      if (auto rss = rss_kib(s_.memory_pid())) {
        report_.memory.available = true;
        report_.memory.rss_before_kib = *rss;
        report_.memory.samples.emplace_back(0, *rss);
      }
    }
    return true;
  }

  bool connect_all() {
    errors_ = &report_.setup_errors;
    connect_start_ns_ = now_ns();
    last_open_ns_ = connect_start_ns_;
    launch_more();
    const auto deadline = connect_start_ns_ + seconds_to_ns(s_.connect_timeout_s);
    const bool done = wait_until([&] { return open_ + failed_ >= s_.connections; }, deadline, "connecting");
    auto& c = report_.connect;
    c.open = open_;
    c.failed = failed_ + (s_.connections - open_ - failed_);
    c.connect_time_s = static_cast<double>(last_open_ns_ - connect_start_ns_) / 1e9;
    c.connect_rate = c.connect_time_s > 0 ? open_ / c.connect_time_s : 0;
    c.latency = summarize(connect_hist_);
    if (!done)
      report_.aborted =
          "connect timeout: " + std::to_string(open_) + " of " + std::to_string(s_.connections) + " open";
    if (open_ == 0) {
      if (report_.aborted.empty()) report_.aborted = "no connection could be opened";
      return false;
    }
    return true;
  }

  void launch_more() {
    while (in_flight_ < s_.connect_concurrency && next_to_connect_ < s_.connections && !shutting_down_) {
      const auto id = next_to_connect_++;
      const auto url = s_.url_of(id);
      const auto& u = s_.urls[url];
      members_[id].connect_started_ns = now_ns();
      ++in_flight_;
      members_[id].link = client_connection::start(ioc_, endpoints_[url], u.host + ":" + u.port, u.path,
                                                   tokens_[id], id, *this, s_.write_tick_ms > 0);
    }
    if (next_to_connect_ >= s_.connections) tokens_ = {};  // every token is in a handshake by now
  }

  /// Joins go out with at most connect_concurrency in flight: joining a big room costs the node work per
  /// existing member, and thousands of simultaneous joins would only measure its request timeout.
  bool join_all() {
    const auto start = now_ns();
    for (std::uint32_t id = 0; id < s_.connections; ++id) {
      if (!members_[id].open) continue;
      for (std::uint32_t k = 0; k < members_[id].rooms.size(); ++k) joins_.emplace_back(id, k);
    }
    const std::uint64_t total = joins_.size();
    issue_joins();
    if (total > 0) {
      wait_until([&] { return joins_done_ >= total || open_ == 0; },
                 now_ns() + seconds_to_ns(s_.connect_timeout_s), "joining");
    }
    report_.connect.join_time_s = static_cast<double>(now_ns() - start) / 1e9;
    std::uint32_t joined = 0;
    for (const auto& m : members_) {
      if (m.open && !m.join_failed && m.pending_joins == 0) ++joined;
    }
    report_.connect.joined = joined;
    // Unanswered joins are reported, not fatal: the run goes on with the members that did join (expected
    // deliveries count only those), which is the honest picture of a node that joins slowly.
    if (joins_done_ < total) report_.setup_errors["join_timeout"] += total - joins_done_;
    joins_ = {};
    if (s_.chatting()) check_rate_limit();
    const bool any_joined = total == 0 || std::any_of(room_members_.begin(), room_members_.end(),
                                                      [](std::uint32_t n) { return n > 0; });
    if (!any_joined) report_.aborted = "no join succeeded";
    return any_joined;
  }

  void issue_joins() {
    while (joins_in_flight_ < s_.connect_concurrency && next_join_ < joins_.size()) {
      const auto [id, k] = joins_[next_join_++];
      auto& m = members_[id];
      if (!m.open) {
        ++joins_done_;
        continue;
      }
      m.link->send(R"({"op":"join","id":)" + std::to_string(k + 1) + R"(,"room":")" +
                   room_name(m.rooms[k].room) + R"("})");
      ++m.pending_joins;
      ++joins_in_flight_;
    }
  }

  /// The node enforces a per-connection op rate; a sender over it would measure the limiter, not the node.
  void check_rate_limit() {
    if (server_ops_per_second_ <= 0 || senders_.empty()) return;
    const double per_sender = (s_.ramp ? s_.ramp_max_rate : s_.rate) / static_cast<double>(senders_.size());
    if (per_sender > server_ops_per_second_) {
      std::fprintf(stderr,
                   "chorus-bench: warning: up to %.0f sends/s per sender, but the node allows %.0f ops/s per "
                   "connection (start it with --ops_per_second and --ops_burst above that)\n",
                   per_sender, server_ops_per_second_);
    }
  }

  // --- measurement -----------------------------------------------------------------------------------

  void run_steps() {
    double rate = s_.rate;
    for (std::size_t step = 0;; ++step) {
      step_result r = run_step(rate);
      const bool held = r.delivery_ratio >= s_.min_delivery_ratio &&
                        r.delivery_latency.p99_ms <= s_.p99_bound_ms && r.disconnects == 0 &&
                        r.acknowledged >= r.sent && r.expected > 0;
      r.held = s_.chatting() ? held : r.disconnects == 0;
      report_.steps.push_back(r);
      if (r.held) report_.highest_held = step;
      if (!s_.ramp || !r.held || open_ == 0) break;
      rate *= s_.ramp_factor;
      if (rate > s_.ramp_max_rate * 1.0001) break;
    }
  }

  step_result run_step(double rate) {
    window_ = window_counters{};
    if (s_.urls.size() > 1) window_.delivered_by_url.assign(s_.urls.size(), 0);
    ack_hist_.reset();
    ack_from_write_hist_.reset();
    // One histogram per second of the window, by send time: a queue that builds up and a one-off stall
    // give the same p99 over the window, and differ here.
    ack_by_second_.assign(static_cast<std::size_t>(std::ceil(s_.duration_s)), histogram{});
    delivery_hist_.reset();
    same_url_hist_.reset();
    other_url_hist_.reset();
    churn_hist_.reset();
    errors_ = &window_.errors;
    const auto start = now_ns();
    window_start_ns_ = start + seconds_to_ns(s_.warmup_s);
    window_end_ns_ = window_start_ns_ + seconds_to_ns(s_.duration_s);
    start_pacing(rate);
    double cpu0 = 0, cpu1 = 0;
    std::uint64_t wall0 = 0, wall1 = 0;
    wait_until([&] { return now_ns() >= window_start_ns_; }, UINT64_MAX, "warming up");
    cpu0 = cpu_seconds();
    const auto server0 = servers_cpu_seconds();
    wall0 = now_ns();
    wait_until([&] { return now_ns() >= window_end_ns_; }, UINT64_MAX, "measuring");
    cpu1 = cpu_seconds();
    const auto server1 = servers_cpu_seconds();
    wall1 = now_ns();
    // A late pacer still owes the window's last messages; they go out now, and their lateness is latency.
    wait_until([&] { return !pacer_running_; }, now_ns() + seconds_to_ns(s_.drain_s), "measuring");
    pacing_ = false;
    // Drain: wait for every reply and delivery of the window's messages, or give up after drain_s.
    wait_until(
        [&] {
          return window_.acknowledged + error_replies_in_window_ >= window_.sent &&
                 window_.delivered >= window_.expected && churn_in_flight_ == 0;
        },
        now_ns() + seconds_to_ns(s_.drain_s), "draining");
    error_replies_in_window_ = 0;

    step_result r;
    r.offered_rate = rate;
    r.duration_s = s_.duration_s;
    r.sent = window_.sent;
    r.acknowledged = window_.acknowledged;
    r.delivered = window_.delivered;
    r.expected = window_.expected;
    r.delivery_ratio =
        window_.expected == 0 ? 0.0 : static_cast<double>(window_.delivered) / window_.expected;
    r.deliveries_per_s = static_cast<double>(window_.received_in_window) / s_.duration_s;
    r.ack_latency = summarize(ack_hist_);
    r.ack_latency_from_write = summarize(ack_from_write_hist_);
    for (const auto& h : ack_by_second_) r.ack_latency_by_second.push_back(summarize(h));
    r.delivery_latency = summarize(delivery_hist_);
    if (s_.urls.size() > 1) {
      r.delivery_latency_same_url = summarize(same_url_hist_);
      r.delivery_latency_other_url = summarize(other_url_hist_);
      r.delivered_by_url = window_.delivered_by_url;
    }
    r.errors = window_.errors;
    r.disconnects = window_.disconnects;
    r.seq_gaps = window_.seq_gaps;
    r.seq_out_of_order = window_.seq_out_of_order;
    r.max_send_queue = window_.max_send_queue;
    r.max_pacer_lag_ms = static_cast<double>(window_.max_pacer_lag_ns) / 1e6;
    const double wall = static_cast<double>(wall1 - wall0) / 1e9;
    r.generator_cpu = wall > 0 ? (cpu1 - cpu0) / wall : 0;
    if (server0 && server1 && wall > 0) {
      r.server_cpu = 0;
      for (std::size_t i = 0; i < server0->size(); ++i) {
        const double node = ((*server1)[i] - (*server0)[i]) / wall;
        r.server_cpu += node;
        if (server0->size() > 1) r.server_cpus.push_back(node);
      }
    }
    if (s_.churn_rate > 0) {
      churn_result c;
      c.offered_rate = s_.churn_rate;
      c.attempted = window_.churn_attempted;
      c.completed = window_.churn_completed;
      c.failed = window_.churn_failed;
      c.completed_per_s = static_cast<double>(c.completed) / s_.duration_s;
      c.latency = summarize(churn_hist_);
      report_.churn = c;
    }
    errors_ = &report_.setup_errors;
    return r;
  }

  /// CPU seconds of every --server-pid, in order; nullopt when there are none or one is unreadable.
  std::optional<std::vector<double>> servers_cpu_seconds() const {
    if (s_.server_pids.empty()) return std::nullopt;
    std::vector<double> out;
    for (const int pid : s_.server_pids) {
      const auto cpu = cpu_seconds_of(pid);
      if (!cpu) return std::nullopt;
      out.push_back(*cpu);
    }
    return out;
  }

  /// The node's RSS with every connection still open: after the idle settle, or after the last step.
  void record_memory_after() {
    if (!report_.memory.available || report_.memory.rss_after_kib != 0) return;
    if (auto rss = rss_kib(s_.memory_pid())) {
      report_.memory.rss_after_kib = *rss;
      report_.memory.samples.emplace_back(open_, *rss);
      if (open_ > 0) {
        report_.memory.rss_per_connection_kib =
            (static_cast<double>(*rss) - static_cast<double>(report_.memory.rss_before_kib)) / open_;
      }
    }
  }

  void hold_idle() {
    errors_ = &report_.setup_errors;
    const auto settle_end = now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(kSettle).count();
    wait_until([&] { return now_ns() >= settle_end; }, UINT64_MAX, "settling");
    record_memory_after();
    const auto hold_end = now_ns() + seconds_to_ns(s_.duration_s);
    wait_until([&] { return now_ns() >= hold_end; }, UINT64_MAX, "holding");
    step_result r;
    r.duration_s = s_.duration_s;
    r.disconnects = report_.disconnects;
    r.held = report_.disconnects == 0;
    report_.steps.push_back(r);
  }

  void sample_memory() {
    if (!report_.memory.available || s_.chatting() || s_.connections < 10) return;
    if (open_ % (s_.connections / 10) != 0) return;
    if (auto rss = rss_kib(s_.memory_pid())) report_.memory.samples.emplace_back(open_, *rss);
  }

  // --- pacing ----------------------------------------------------------------------------------------

  void start_pacing(double rate) {
    rate_ = rate;
    pace_origin_ns_ = now_ns();
    next_flush_tick_ = 0;
    issued_ = 0;
    churn_issued_ = 0;
    pacing_ = true;
    if (!pacer_running_) {
      pacer_running_ = true;
      pacer_due_ns_ = now_ns();
      pacer_.expires_after(0ns);
      tick();
    }
  }

  /// Token pacing: the timer wakes for the next scheduled message; pace() issues whatever is due, each
  /// message stamped with its scheduled time (not the time it left), so a late generator shows up as latency
  /// instead of hiding it.
  void tick() {
    pacer_.async_wait([this](boost::system::error_code ec) {
      if (ec || !pacing_ || !pace(now_ns())) {
        pacer_running_ = false;
        return;
      }
      pacer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(pacer_due_ns_)));
      tick();
    });
  }

  /// Issues the messages and churn connections due at `now` and sets pacer_due_ns_ to the next due time.
  /// Returns false once the window is fully issued. Also called from the receive path: a burst of frames
  /// can keep the io_context busy for milliseconds before it polls the timer, and sends must not wait.
  bool pace(std::uint64_t now) {
    if (now >= window_start_ns_ && now < window_end_ns_ && now > pacer_due_ns_) {
      window_.max_pacer_lag_ns = std::max(window_.max_pacer_lag_ns, now - pacer_due_ns_);
    }
    std::uint64_t next = now + kMaxTickNs;
    if (s_.chatting() && !senders_.empty()) {
      // Message k is scheduled at origin + k / rate.
      for (;; ++issued_) {
        const auto stamp = scheduled(issued_, rate_);
        if (stamp > now || stamp >= window_end_ns_) {
          next = std::min(next, stamp);
          break;
        }
        send_one(stamp, now);
      }
    }
    if (s_.churn_rate > 0) {
      for (; now < window_end_ns_; ++churn_issued_) {
        const auto at = scheduled(churn_issued_, s_.churn_rate);
        if (at > now) {
          next = std::min(next, at);
          break;
        }
        churn_start(now);
      }
    }
    const bool chat_done = !s_.chatting() || senders_.empty() || scheduled(issued_, rate_) >= window_end_ns_;
    if (s_.write_tick_ms > 0) flush_due_writers(now, chat_done);
    if (chat_done && (s_.churn_rate <= 0 || now >= window_end_ns_)) return false;
    pacer_due_ns_ = std::max(next, now + kMinTickNs);
    return true;
  }

  /// --write-tick-ms: connection c writes what it holds in the 1 ms slots k with k mod write_tick_ms equal
  /// to c mod write_tick_ms, so that the connections' writes spread over the interval instead of reaching
  /// the node all at once. Slots the pacer slept through are caught up; `all` flushes every connection.
  void flush_due_writers(std::uint64_t now, bool all) {
    const std::uint64_t slots = s_.write_tick_ms;
    const std::uint64_t slot_now = (now - pace_origin_ns_) / kMinTickNs;
    if (all || slot_now >= next_flush_tick_ + slots) {
      for (auto& m : members_) flush(m, now);
      next_flush_tick_ = slot_now + 1;
      return;
    }
    for (; next_flush_tick_ <= slot_now; ++next_flush_tick_) {
      for (std::uint64_t c = next_flush_tick_ % slots; c < members_.size(); c += slots) {
        flush(members_[c], now);
      }
    }
  }

  /// Writes what `m` holds, and notes when its held sends left.
  static void flush(member& m, std::uint64_t now) {
    if (!m.link) return;
    if (m.held_newest != 0) {
      m.writes.emplace_back(m.held_newest, now);
      m.held_newest = 0;
    }
    m.link->flush();
  }

  std::uint64_t scheduled(std::uint64_t k, double rate) const {
    return pace_origin_ns_ + static_cast<std::uint64_t>(static_cast<double>(k) * 1e9 / rate);
  }

  void send_one(std::uint64_t stamp, std::uint64_t now) {
    const auto id = senders_[next_sender_++ % senders_.size()];
    auto& m = members_[id];
    if (!m.open) {
      if (in_window(stamp)) count_error(errors_, "sender_closed");
      return;
    }
    const auto stamp_text = std::to_string(stamp);
    std::string frame;
    frame.reserve(96 + s_.message_bytes + s_.room_prefix.size());
    frame += R"({"op":"send","id":)";
    frame += std::to_string(m.next_send_id++);
    frame += R"(,"room":")";
    frame += room_name(static_cast<std::uint32_t>(m.send_room));
    frame += R"(","text":")";
    frame += kStampMarker;
    frame += stamp_text;
    frame += ';';
    const std::size_t used = kStampMarker.size() + stamp_text.size() + 1;
    if (s_.message_bytes > used) frame.append(padding_, 0, s_.message_bytes - used);
    frame += R"(","client_msg_id":")";
    frame += stamp_text;
    frame += R"("})";
    if (s_.write_tick_ms > 0) {
      m.link->hold(std::move(frame));
      m.held_newest = stamp;
    } else {
      m.link->send(std::move(frame));
      m.writes.emplace_back(stamp, now);
    }
    if (in_window(stamp)) {
      ++window_.sent;
      // Every member of the room should get it, whether or not the send is acknowledged: a message lost to
      // an error counts against the delivery ratio.
      window_.expected += room_members_[static_cast<std::size_t>(m.send_room)];
      window_.max_send_queue = std::max<std::uint64_t>(window_.max_send_queue, m.link->queued());
    }
  }

  // --- receive side ----------------------------------------------------------------------------------

  bool in_window(std::uint64_t stamp) const { return stamp >= window_start_ns_ && stamp < window_end_ns_; }

  void on_message(std::uint32_t id, const scanned_line& sc, std::uint64_t now) {
    if (now >= window_start_ns_ && now < window_end_ns_) ++window_.received_in_window;
    if (id >= s_.connections || sc.room_index == UINT64_MAX) return;
    auto& m = members_[id];
    for (auto& slot : m.rooms) {
      if (slot.room != sc.room_index) continue;
      if (slot.joined) {
        if (sc.seq == slot.last_seq + 1) {
          slot.last_seq = sc.seq;
        } else if (sc.seq > slot.last_seq) {
          window_.seq_gaps += sc.seq - slot.last_seq - 1;
          slot.last_seq = sc.seq;
        } else {
          ++window_.seq_out_of_order;
        }
      }
      break;
    }
    if (sc.stamped && in_window(sc.stamp_ns)) {
      ++window_.delivered;
      const auto latency = now > sc.stamp_ns ? now - sc.stamp_ns : 0;
      delivery_hist_.record(latency);
      if (s_.urls.size() > 1) {
        const auto url = s_.url_of(id);
        ++window_.delivered_by_url[url];
        // Does this member share a node with the sender?
        if (sc.sender < s_.connections)
          (s_.url_of(sc.sender) == url ? same_url_hist_ : other_url_hist_).record(latency);
      }
    }
  }

  void on_ack(std::uint32_t id, const scanned_line& sc, std::uint64_t now) {
    if (id >= s_.connections || !in_window(sc.stamp_ns)) return;
    ++window_.acknowledged;
    const std::uint64_t latency = now > sc.stamp_ns ? now - sc.stamp_ns : 0;
    ack_hist_.record(latency);
    // Acks of one connection come in the order of its sends (all go to one room), so the writes before this
    // send's own are done with. One not found (its write was not noted) is left out of this histogram only.
    auto& writes = members_[id].writes;
    while (!writes.empty() && writes.front().first < sc.stamp_ns) writes.pop_front();
    if (!writes.empty())
      ack_from_write_hist_.record(now > writes.front().second ? now - writes.front().second : 0);
    const auto second = static_cast<std::size_t>((sc.stamp_ns - window_start_ns_) / 1'000'000'000);
    if (second < ack_by_second_.size()) ack_by_second_[second].record(latency);
  }

  /// Everything the scan did not settle: join replies, errors, and lines in an unexpected layout.
  void slow_path(std::uint32_t id, std::string_view line, std::uint64_t now) {
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    const json::object* o = ec ? nullptr : v.if_object();
    if (o == nullptr) {
      count_error(errors_, "unparseable_line");
      return;
    }
    if (const auto* ev = o->if_contains("ev")) {
      const auto* name = ev->if_string();
      if (name != nullptr && *name == "error") {
        count_error(errors_, error_code_of(*o));
      } else if (name != nullptr && *name == "message") {
        on_message(id, rescan_message(*o), now);
      }
      return;
    }
    const auto* re = o->if_contains("re");
    const auto* ok = o->if_contains("ok");
    if (re == nullptr || !re->is_int64() || ok == nullptr || !ok->is_bool()) {
      count_error(errors_, "unexpected_line");
      return;
    }
    const auto reply_id = re->as_int64();
    const bool success = ok->as_bool();
    if (!success) {
      const auto code = error_code_of(*o);
      count_error(errors_, code);
      if (reply_id >= kSendIdBase) ++error_replies_in_window_;
    }
    if (id >= s_.connections) return churn_reply(id - s_.connections, success, now);
    if (reply_id >= 1 && reply_id < kSendIdBase)
      on_join_reply(id, static_cast<std::size_t>(reply_id - 1), success, *o);
  }

  void on_join_reply(std::uint32_t id, std::size_t k, bool success, const json::object& o) {
    auto& m = members_[id];
    if (k >= m.rooms.size() || m.pending_joins == 0) return;
    --m.pending_joins;
    ++joins_done_;
    --joins_in_flight_;
    issue_joins();
    if (!success) {
      m.join_failed = true;
      return;
    }
    auto& slot = m.rooms[k];
    if (slot.joined) return;
    slot.joined = true;
    if (const auto* d = o.if_contains("d"); d != nullptr && d->is_object()) {
      if (const auto* last = d->as_object().if_contains("last_seq"); last != nullptr && last->is_int64()) {
        slot.last_seq = static_cast<std::uint64_t>(last->as_int64());
      }
    }
    ++room_members_[slot.room];
  }

  scanned_line rescan_message(const json::object& o) const {
    scanned_line sc;
    sc.kind = line_kind::message;
    sc.room_index = UINT64_MAX;
    if (const auto* room = o.if_contains("room"); room != nullptr && room->is_string()) {
      std::string_view name = room->as_string();
      if (name.starts_with(s_.room_prefix)) parse_digits(name.substr(s_.room_prefix.size()), sc.room_index);
    }
    if (const auto* seq = o.if_contains("seq"); seq != nullptr && seq->is_int64()) {
      sc.seq = static_cast<std::uint64_t>(seq->as_int64());
    }
    if (const auto* d = o.if_contains("d"); d != nullptr && d->is_object()) {
      if (const auto* user = d->as_object().if_contains("user"); user != nullptr && user->is_string()) {
        std::string_view name = user->as_string();
        std::uint64_t index = 0;
        if (name.starts_with(kUserPrefix)) {
          name.remove_prefix(kUserPrefix.size());
          if (!name.empty() && parse_digits(name, index) == name.size()) sc.sender = index;
        }
      }
      if (const auto* text = d->as_object().if_contains("text"); text != nullptr && text->is_string()) {
        std::string_view t = text->as_string();
        if (t.starts_with(kStampMarker)) {
          t.remove_prefix(kStampMarker.size());
          sc.stamped = parse_digits(t, sc.stamp_ns) > 0;
        }
      }
    }
    return sc;
  }

  static std::string error_code_of(const json::object& o) {
    if (const auto* e = o.if_contains("error"); e != nullptr && e->is_object()) {
      if (const auto* c = e->as_object().if_contains("code"); c != nullptr && c->is_string()) {
        return std::string(c->as_string());
      }
    }
    return "error_without_code";
  }

  void read_hello(std::string_view line) {
    hello_seen_ = true;
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) return;
    const auto* d = v.as_object().if_contains("d");
    if (d == nullptr || !d->is_object()) return;
    const auto* limits = d->as_object().if_contains("limits");
    if (limits == nullptr || !limits->is_object()) return;
    if (const auto* ops = limits->as_object().if_contains("ops_per_second");
        ops != nullptr && ops->is_int64()) {
      server_ops_per_second_ = static_cast<double>(ops->as_int64());
    }
  }

  // --- churn -----------------------------------------------------------------------------------------

  void churn_start(std::uint64_t now) {
    if (free_churn_.empty()) {
      if (now >= window_start_ns_) count_error(errors_, "churn_concurrency_exhausted");
      return;
    }
    const auto slot = free_churn_.back();
    free_churn_.pop_back();
    auto& c = churn_[slot];
    c.busy = true;
    c.completed = false;
    c.started_ns = now;
    c.counted = now >= window_start_ns_ && now < window_end_ns_;
    if (c.counted) ++window_.churn_attempted;
    ++churn_in_flight_;
    const auto id = s_.connections + slot;
    const auto& u = s_.urls[churn_next_url_++ % s_.urls.size()];
    c.link = client_connection::start(ioc_, endpoints_[(churn_next_url_ - 1) % endpoints_.size()],
                                      u.host + ":" + u.port, u.path, churn_tokens_[slot], id, *this);
  }

  void churn_open(std::uint32_t slot) {
    // A room per churn slot (one connection at a time): a shared room would make every join and leave a
    // broadcast to the other churn connections and measure that instead of connection set-up.
    churn_[slot].link->send(R"({"op":"join","id":1,"room":")" + s_.room_prefix + "c" + std::to_string(slot) +
                            R"("})");
  }

  void churn_reply(std::uint32_t slot, bool success, std::uint64_t now) {
    auto& c = churn_[slot];
    if (c.completed) return;
    c.completed = true;
    if (c.counted) {
      if (success) {
        ++window_.churn_completed;
        churn_hist_.record(now - c.started_ns);
      } else {
        ++window_.churn_failed;
      }
    }
    c.link->close();
  }

  void churn_closed(std::uint32_t slot, std::string_view what) {
    auto& c = churn_[slot];
    if (!c.completed && c.counted && !shutting_down_) {
      ++window_.churn_failed;
      count_error(errors_, "churn: " + std::string(what));
    }
    c.busy = false;
    c.link.reset();
    --churn_in_flight_;
    free_churn_.push_back(slot);
  }

  // --- teardown and plumbing -------------------------------------------------------------------------

  void teardown() {
    shutting_down_ = true;
    pacing_ = false;
    for (auto& m : members_) {
      if (m.link && !m.ended) m.link->close();
    }
    for (auto& c : churn_) {
      if (c.link) c.link->close();
    }
    const auto started = static_cast<std::uint64_t>(next_to_connect_);
    wait_until([&] { return ended_ >= started && churn_in_flight_ == 0; },
               now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(kCloseWait).count(),
               "closing");
    for (auto& m : members_) {
      if (m.link && !m.ended) m.link->abort();
    }
    for (auto& c : churn_) {
      if (c.link) c.link->abort();
    }
    pacer_.cancel();
    ioc_.run_for(200ms);
    members_.clear();
    churn_.clear();
  }

  std::string room_name(std::uint32_t room) const { return s_.room_prefix + std::to_string(room); }

  void count_error(std::map<std::string, std::uint64_t>* into, const std::string& what) {
    if (into == nullptr) return;
    count_error(*into, what);
  }
  static void count_error(std::map<std::string, std::uint64_t>& into, const std::string& what) {
    if (into.size() >= kMaxErrorKinds && into.find(what) == into.end()) {
      ++into["other"];
    } else {
      ++into[what];
    }
  }

  /// Runs the io_context in short slices until `done()` or `deadline` (ns); prints progress meanwhile.
  template <class Done>
  bool wait_until(Done done, std::uint64_t deadline, const char* phase) {
    while (!done()) {
      if (now_ns() >= deadline) return false;
      if (ioc_.stopped()) ioc_.restart();
      // With nothing outstanding run_for returns at once; do not spin through a timed phase.
      if (ioc_.run_for(kPoll) == 0 && ioc_.stopped()) std::this_thread::sleep_for(kPoll);
      progress(phase);
    }
    return true;
  }

  void progress(const char* phase) {
    if (!interactive_) return;
    const auto now = now_ns();
    if (now - last_progress_ns_ < 1'000'000'000ULL) return;
    const double dt = static_cast<double>(now - last_progress_ns_) / 1e9;
    const auto received = window_.received_in_window;
    std::uint64_t errors = 0;
    if (errors_ != nullptr) {
      for (const auto& [k, v] : *errors_) errors += v;
    }
    std::fprintf(stderr,
                 "\r\033[K[%s] %s: %u open, %u failed, %.0f msg/s offered, %.0f deliveries/s, %llu errors, "
                 "%llu disconnects",
                 s_.name.c_str(), phase, open_, failed_, pacing_ ? rate_ : 0.0,
                 last_progress_ns_ == 0 ? 0.0 : static_cast<double>(received - last_received_) / dt,
                 static_cast<unsigned long long>(errors),
                 static_cast<unsigned long long>(report_.disconnects));
    std::fflush(stderr);
    last_progress_ns_ = now;
    last_received_ = received;
  }

  const scenario& s_;
  run_report report_;
  asio::io_context ioc_;
  asio::steady_timer pacer_;
  std::vector<tcp::endpoint> endpoints_;
  std::vector<std::string> tokens_;
  std::vector<member> members_;
  std::vector<std::uint32_t> room_members_;
  std::vector<std::uint32_t> senders_;
  std::string padding_;
  histogram connect_hist_, ack_hist_, ack_from_write_hist_, delivery_hist_, churn_hist_;
  std::vector<histogram> ack_by_second_;      ///< ack latency of the sends of each second of the window
  histogram same_url_hist_, other_url_hist_;  ///< delivery latency split by the receiver's URL (several only)
  window_counters window_;
  std::map<std::string, std::uint64_t>* errors_ = nullptr;

  std::uint32_t next_to_connect_ = 0, in_flight_ = 0, open_ = 0, failed_ = 0, ended_ = 0;
  std::uint64_t connect_start_ns_ = 0, last_open_ns_ = 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> joins_;  ///< (connection, room slot) to join, in order
  std::size_t next_join_ = 0;
  std::uint64_t joins_done_ = 0;
  std::uint32_t joins_in_flight_ = 0;
  std::uint64_t error_replies_in_window_ = 0;
  double server_ops_per_second_ = 0;
  bool hello_seen_ = false;

  double rate_ = 0;
  bool pacing_ = false, pacer_running_ = false;
  std::uint64_t pacer_due_ns_ = 0;
  std::uint64_t next_flush_tick_ = 0;  // --write-tick-ms: the next 1 ms slot whose connections write
  std::uint64_t pace_origin_ns_ = 0, issued_ = 0, next_sender_ = 0;
  std::uint64_t window_start_ns_ = UINT64_MAX, window_end_ns_ = UINT64_MAX;

  std::vector<churn_slot> churn_;
  std::vector<std::string> churn_tokens_;
  std::vector<std::uint32_t> free_churn_;
  std::uint64_t churn_issued_ = 0, churn_next_url_ = 0;
  std::uint32_t churn_in_flight_ = 0;

  bool shutting_down_ = false;
  bool interactive_ = false;
  std::uint64_t last_progress_ns_ = 0, last_received_ = 0;
};

}  // namespace

run_report run_load(const scenario& s) {
  // Heap-allocated: six inline histograms make the object over a quarter of a megabyte.
  auto run = std::make_unique<load_run>(s);
  return run->run();
}

}  // namespace chorus::bench
