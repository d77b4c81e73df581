// The HTTP/WebSocket listener: accepting, /healthz, the upgrade, per-connection sessions and shutdown.
#include "net/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "actors/protocol.hpp"

namespace chorus::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using strand_t = asio::strand<asio::io_context::executor_type>;
// Sockets and streams carry their strand's own type rather than any_io_executor: every handler of every read
// and write copies the executor, and the type-erased copies were about 4.6 % of the node's samples.
using socket_t = tcp::socket::rebind_executor<strand_t>::other;
using http_stream_t = beast::basic_stream<tcp, strand_t>;
using namespace std::chrono_literals;
namespace close_code = protocol::close_code;

// Small on purpose: a peer must not be able to make an HTTP connection expensive. kBodyLimit applies
// outside /api/ (where only /healthz, /metrics and the upgrade are served); /api/ bodies may be
// max_body_bytes. Bodies are read in pieces through the buffer, so its limit does not bound max_body_bytes.
constexpr std::size_t kHeaderLimit = 8 * 1024;
constexpr std::size_t kBodyLimit = 8 * 1024;
constexpr std::size_t kHttpBufferLimit = kHeaderLimit + kBodyLimit + 4 * 1024;
constexpr auto kRequestTimeout = 10s;
// How long a connection refused for want of a slot may take to send the request its 503 answers. Short:
// refused sockets hold no slot, so only this bounds how many descriptors silent ones can take.
constexpr auto kRefusedRequestTimeout = 1s;
// After an error answer (400, 413, ...) the rest of the request is read and thrown away, this many bytes
// at a time, for at most this long and this much, so that closing does not reset the connection before
// the client has read the answer.
constexpr std::size_t kLingerChunk = 4 * 1024;
constexpr std::size_t kLingerBytes = 1024 * 1024;
constexpr auto kLingerTimeout = 2s;
constexpr auto kHandshakeTimeout = 10s;
// A client that stopped reading can block a write forever; after asking it to close we wait this long.
constexpr auto kCloseDeadline = 2s;
// How long stop() waits for sockets it cut at the shutdown deadline to report back.
constexpr auto kCutOffGrace = 1s;
// One WebSocket message carries at most this much payload, so one slow write cannot hold many frames.
constexpr std::size_t kMaxWriteBytes = 256 * 1024;
// A queue past send_queue_limit is not yet a slow consumer: the server makes bursts of its own (a commit
// that waited for the database releases every acknowledgement and message it held at once), and a client
// that reads takes them in milliseconds. It is one when its write has waited this long, or when the queue
// reaches kQueueHardFactor times the limit, which bounds the memory a connection can hold either way.
constexpr auto kStuckWrite = 1s;
constexpr std::uint32_t kQueueHardFactor = 4;
// Frames shorter than this are copied into one contiguous buffer for the write: Asio hands at most
// 64 iovecs to one sendmsg, so gathering hundreds of small frames would cost one system call per 32 of
// them, while copying them is a memcpy. Longer frames are sent in place.
constexpr std::size_t kCopyBelow = 1024;
// A waiting read reserves this much (Beast would reserve 1,536 bytes); most client requests fit in it.
constexpr std::size_t kIdleReadBytes = 256;
// Later pieces of a longer message are read this many bytes at a time.
constexpr std::size_t kReadChunkBytes = 16 * 1024;

/// Reports an I/O error. An aborted operation or a closed stream is how connections normally end, so
/// those are not worth a line; per-connection errors are debug noise, listener errors are not.
void fail(beast::error_code ec, std::string_view what, std::uint64_t conn_id = 0) {
  if (ec == asio::error::operation_aborted || ec == websocket::error::closed) return;
  if (conn_id == 0) {
    spdlog::warn("{}: {}", what, ec.message());
  } else {
    spdlog::debug("connection {}: {}: {}", conn_id, what, ec.message());
  }
}

std::string error_body(std::string_view code, std::string_view message) {
  json::value v = {{"error", {{"code", code}, {"message", message}}}};
  return json::serialize(v);
}

std::string endpoint_text(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  if (addr.is_v6()) return "[" + addr.to_string() + "]:" + std::to_string(ep.port());
  return addr.to_string() + ":" + std::to_string(ep.port());
}

std::optional<std::string> bearer_token(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i]) return std::nullopt;
  }
  auto token = authorization.substr(scheme.size());
  while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return std::string(token);
}

/// Any accepted socket, as the registry sees it. Every member may be called from any thread: each
/// one posts to the connection's strand, except detach(), which runs only after the io threads stopped.
class connection : public std::enable_shared_from_this<connection> {
 public:
  virtual ~connection() = default;
  /// Begin a graceful close (1001 for a WebSocket).
  virtual void go_away() = 0;
  /// Cut the socket now.
  virtual void force_close() = 0;
  /// Close a WebSocket with 1012 (its client reconnects and resumes); nothing for plain HTTP.
  virtual void restart() {}
  /// The io threads are gone: release every I/O object while the io_context still exists, because an
  /// actor may keep this object alive after the server is destroyed.
  virtual void detach() = 0;
};

/// What the listener and every connection share. Counters are atomics; the registry and the slot count
/// are guarded by `mu`. Sessions hold it by shared_ptr so that it outlives the last of them.
struct server_state {
  server_state(const config::node_config& c, actors::session_factory& f, actors::http_handler* a,
               std::function<std::string()> m)
      : cfg(c), factory(f), api(a), metrics(std::move(m)) {}

  const config::node_config cfg;
  actors::session_factory& factory;
  actors::http_handler* const api;             // null: /api/... is 404
  const std::function<std::string()> metrics;  // empty: /metrics is 404

  std::atomic<bool> stopping{false};
  // Held shared around factory.open() and api->handle(); stop() takes it exclusively once, after which
  // neither can still be running or start.
  std::shared_mutex open_mu;

  std::atomic<std::uint64_t> next_id{1};
  std::atomic<std::uint64_t> accepted_total{0};
  std::atomic<std::uint64_t> ws_open{0};
  std::atomic<std::uint64_t> slow_consumers_closed{0};
  std::atomic<std::uint64_t> reads_paused{0};

  std::mutex mu;
  std::condition_variable slots_cv;
  std::size_t tcp_open = 0;  // sockets holding a slot: what max_connections limits and stop() waits for
  std::unordered_map<std::uint64_t, std::weak_ptr<connection>> registry;

  bool try_acquire_slot() {
    std::lock_guard lk(mu);
    if (tcp_open >= cfg.max_connections) return false;
    ++tcp_open;
    return true;
  }
  void release_slot() {
    {
      std::lock_guard lk(mu);
      --tcp_open;
    }
    slots_cv.notify_all();
  }
  void add(std::uint64_t id, std::weak_ptr<connection> c) {
    std::lock_guard lk(mu);
    registry[id] = std::move(c);
  }
  /// Called from destructors; an upgraded connection re-registers under the same id, so only an expired
  /// entry belongs to the object going away.
  void remove_expired(std::uint64_t id) {
    std::lock_guard lk(mu);
    auto it = registry.find(id);
    if (it != registry.end() && it->second.expired()) registry.erase(it);
  }
  std::vector<std::shared_ptr<connection>> snapshot() {
    std::vector<std::shared_ptr<connection>> out;
    std::lock_guard lk(mu);
    out.reserve(registry.size());
    for (auto& [id, weak] : registry) {
      if (auto c = weak.lock()) out.push_back(std::move(c));
    }
    return out;
  }
};

/// The listener's own counters, in Prometheus' text format, after the node's (`server_state::metrics`).
std::string server_metrics(const server_state& st) {
  return "# HELP chorus_connections_accepted_total TCP connections accepted, WebSocket or HTTP.\n"
         "# TYPE chorus_connections_accepted_total counter\n"
         "chorus_connections_accepted_total " +
         std::to_string(st.accepted_total.load(std::memory_order_relaxed)) +
         "\n"
         "# HELP chorus_slow_consumers_closed_total WebSocket connections closed (4008) because the client "
         "did not read what was sent to it.\n"
         "# TYPE chorus_slow_consumers_closed_total counter\n"
         "chorus_slow_consumers_closed_total " +
         std::to_string(st.slow_consumers_closed.load(std::memory_order_relaxed)) +
         "\n"
         "# HELP chorus_reads_paused_total Times a WebSocket connection was not read because its session had "
         "receive_queue_limit frames waiting.\n"
         "# TYPE chorus_reads_paused_total counter\n"
         "chorus_reads_paused_total " +
         std::to_string(st.reads_paused.load(std::memory_order_relaxed)) + "\n";
}

/// One unit of max_connections, given back exactly once: when the socket is gone, not when the object
/// is (an actor may hold a session long after its socket closed). Not thread-safe; owned by one strand.
class conn_slot {
 public:
  conn_slot() = default;
  explicit conn_slot(server_state* st) : st_(st) {}
  conn_slot(conn_slot&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
  conn_slot& operator=(conn_slot&& o) noexcept {
    if (this != &o) {
      release();
      st_ = std::exchange(o.st_, nullptr);
    }
    return *this;
  }
  conn_slot(const conn_slot&) = delete;
  conn_slot& operator=(const conn_slot&) = delete;
  ~conn_slot() { release(); }
  void release() {
    if (st_ != nullptr) std::exchange(st_, nullptr)->release_slot();
  }

 private:
  server_state* st_ = nullptr;
};

/// An upgraded connection and the client_link the session actor writes to.
///
/// Threading: push() and close() may be called from any thread; they touch only the mutex-guarded
/// queue and post to the strand. Everything else — the stream, the read loop, the handle, the write
/// and close state — runs on the connection's strand (detach() excepted, see connection).
///
/// Memory: an idle connection is dominated by Beast's stream (~2.5 KiB, with its own 1.5 KiB read
/// buffer); this object keeps only what every connection needs and allocates the rest (write batch,
/// close state, read buffer beyond a small first read) while it is in use.
class ws_session final : public connection, public actors::client_link {
 public:
  ws_session(std::shared_ptr<server_state> st, std::uint64_t id, socket_t&& socket, strand_t strand,
             conn_slot slot)
      : st_(std::move(st)), id_(id), strand_(std::move(strand)), slot_(std::move(slot)) {
    ws_.emplace(std::move(socket));
  }
  ~ws_session() override { st_->remove_expired(id_); }

  /// Completes the upgrade; on the strand.
  void run(const http::request<http::string_body>& req) {
    actors::connection_info info;
    info.id = id_;
    beast::error_code ec;
    const auto ep = ws_->next_layer().remote_endpoint(ec);
    info.remote = ec ? "unknown" : endpoint_text(ep);
    info.bearer_token = bearer_token(req[http::field::authorization]);

    websocket::stream_base::timeout opt{};
    opt.handshake_timeout = kHandshakeTimeout;
    opt.idle_timeout = st_->cfg.idle_timeout_ms == 0 ? websocket::stream_base::none()
                                                     : std::chrono::milliseconds(st_->cfg.idle_timeout_ms);
    opt.keep_alive_pings = true;
    ws_->set_option(opt);
    timeouts_ = opt;
    ws_->read_message_max(st_->cfg.max_frame_bytes);
    // A batch must leave as one frame in one sendmsg; fragmenting would split it into 4 KiB writes.
    ws_->auto_fragment(false);
    ws_->text(true);

    // The info rides in the handler rather than in this object: it is needed once, at open.
    ws_->async_accept(req, [self = self(), info = std::move(info)](beast::error_code ec) mutable {
      self->on_accept(ec, std::move(info));
    });
  }

  bool push(actors::frame_ptr frame, actors::traffic kind) override {
    if (!frame) return false;
    std::lock_guard lk(mu_);
    if (closing_) return false;
    if (queue_.size() >= st_->cfg.send_queue_limit) {
      if (kind == actors::traffic::droppable) return false;
      if (droppable_queued_ > 0) {
        std::erase_if(queue_, [](const queued& q) { return q.kind == actors::traffic::droppable; });
        droppable_queued_ = 0;
      }
      if (queue_.size() >= st_->cfg.send_queue_limit && slow_locked()) {
        // What is queued will not reach a client that cannot take it: free it now.
        std::vector<queued>().swap(queue_);
        st_->slow_consumers_closed.fetch_add(1, std::memory_order_relaxed);
        begin_close_locked(close_code::slow_consumer, "slow consumer");
        return false;
      }
    }
    queue_.push_back({std::move(frame), kind});
    if (kind == actors::traffic::droppable) ++droppable_queued_;
    if (!writing_ && !flush_posted_) {
      flush_posted_ = true;
      // Posted under the lock so that detach() (which sets done_ under it) cannot release the
      // strand between the check and the post.
      asio::post(strand_, [self = self()] { self->flush(); });
    }
    return true;
  }

  /// Whether a connection whose queue is at send_queue_limit is one that cannot keep up (see kStuckWrite).
  bool slow_locked() const {
    if (queue_.size() >= std::size_t{st_->cfg.send_queue_limit} * kQueueHardFactor) return true;
    return writing_ && std::chrono::steady_clock::now() - write_started_ >= kStuckWrite;
  }

  void close(std::uint16_t code, std::string reason) override {
    std::lock_guard lk(mu_);
    if (closing_) return;
    begin_close_locked(code, std::move(reason));
  }

  void go_away() override { close(close_code::going_away, "server shutting down"); }
  void restart() override {
    close(close_code::service_restart, "this node rejoined the cluster; reconnect and resume");
  }

  void force_close() override {
    std::lock_guard lk(mu_);
    if (done_) return;
    asio::post(strand_, [self = self()] {
      if (self->cut_ == cut::no) self->cut_ = cut::shutdown;
      self->abort_socket();
    });
  }

  void detach() override {
    {
      std::lock_guard lk(mu_);
      closing_ = true;
      done_ = true;
      std::vector<queued>().swap(queue_);
    }
    finish("server stopped");
    cs_.reset();
    wr_.reset();
    ws_.reset();
    // Moving out releases the strand's implementation, which must not outlive the io_context.
    [[maybe_unused]] auto released = std::move(strand_);
  }

 private:
  struct queued {
    actors::frame_ptr frame;
    actors::traffic kind;
  };
  /// The frames of the write in flight, kept alive until it completes, and the buffers naming them.
  struct write_state {
    std::vector<queued> frames;
    std::vector<asio::const_buffer> buffers;
    std::string copied;  // short frames and separators, copied (see kCopyBelow)
  };
  /// Exists once a close began.
  struct close_state {
    close_state(const strand_t& s, std::uint16_t c, std::string r)
        : code(c), reason(std::move(r)), deadline(s) {}
    std::uint16_t code;
    std::string reason;
    asio::steady_timer deadline;
  };
  enum class cut : std::uint8_t { no, deadline, shutdown };

  std::shared_ptr<ws_session> self() { return std::static_pointer_cast<ws_session>(shared_from_this()); }

  void on_accept(beast::error_code ec, actors::connection_info info) {
    if (ec) {
      fail(ec, "websocket accept", id_);
      finish("upgrade failed: " + ec.message());
      return;
    }
    beast::error_code ignored;
    ws_->next_layer().set_option(tcp::no_delay(true), ignored);
    open_ = true;
    st_->ws_open.fetch_add(1, std::memory_order_relaxed);
    counted_open_ = true;
    const std::string remote = info.remote;
    {
      std::shared_lock open_lock(st_->open_mu);
      if (!st_->stopping.load()) {
        try {
          handle_ = st_->factory.open(self(), std::move(info));
        } catch (const std::exception& e) {
          spdlog::error("connection {}: session could not be opened: {}", id_, e.what());
        }
      }
    }
    if (handle_) {
      spdlog::info("connection {} opened from {}", id_, remote);
    } else if (st_->stopping.load()) {
      close(close_code::going_away, "server shutting down");
    } else {
      close(1011, "internal error");
    }
    do_read();
    // A close requested while the handshake was still running waited for the stream to open.
    bool pending_close = false;
    {
      std::lock_guard lk(mu_);
      pending_close = closing_;
    }
    if (pending_close) flush();
  }

  /// Reads at most kIdleReadBytes at first, so a waiting read reserves little; a longer message
  /// continues in bigger pieces. Beast's stream buffers what the socket delivered in the meantime.
  void do_read() {
    const std::size_t limit = rd_buf_.size() == 0 ? kIdleReadBytes : kReadChunkBytes;
    ws_->async_read_some(rd_buf_, limit,
                         [self = self()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      fail(ec, "read", id_);
      read_ended_ = true;
      read_ec_ = ec;
      // Our close handshake owns the socket until it completes; it finishes the session then.
      if (!close_pending_) finish(describe(ec));
      return;
    }
    if (!ws_->is_message_done()) {
      do_read();
      return;
    }
    std::string message = beast::buffers_to_string(rd_buf_.data());
    // Client input is rare next to output: giving the buffer back every time keeps idle reads small.
    rd_buf_.clear();
    rd_buf_.shrink_to_fit();
    bool more = true;
    if (handle_) {
      try {
        if (ws_->got_text()) {
          more = handle_->on_text(std::move(message));
        } else {
          more = handle_->on_binary();
        }
      } catch (const std::exception& e) {
        spdlog::error("connection {}: session failed on input: {}", id_, e.what());
        close(1011, "internal error");
      }
    }
    if (!more) {
      pause_reading();
      return;
    }
    do_read();
  }

  /// Stops the read loop until resume_reading(). Beast's idle timer only runs while a read is pending:
  /// without one, nothing would read the client's pong, and the timer would cut off a client that is fine
  /// (and close the socket where no handler would notice). So idle checks stop while reading does.
  void pause_reading() {
    read_paused_ = true;
    st_->reads_paused.fetch_add(1, std::memory_order_relaxed);
    auto paused = timeouts_;
    paused.idle_timeout = websocket::stream_base::none();
    paused.keep_alive_pings = false;
    ws_->set_option(paused);
  }

  void read_again() {
    read_paused_ = false;
    ws_->set_option(timeouts_);
    do_read();
  }

  void resume_reading() override {
    std::lock_guard lk(mu_);
    if (done_) return;
    asio::post(strand_, [self = self()] {
      if (!self->read_paused_) return;
      // On a socket that closed meanwhile the read fails at once, and its handler finishes the session.
      self->read_again();
    });
  }

  std::string describe(beast::error_code ec) const {
    if (cut_ == cut::deadline) {
      return fmt::format("cut off: no close handshake within {} ms of closing with {}",
                         std::chrono::milliseconds(kCloseDeadline).count(), cs_ ? cs_->code : 0);
    }
    if (cut_ == cut::shutdown) return "cut off at shutdown";
    if (ec == beast::error::timeout) return close_sent_ ? "close handshake timed out" : "idle timeout";
    if (close_sent_ && cs_) return fmt::format("closed by server with {} ({})", cs_->code, cs_->reason);
    if (ec == websocket::error::closed) {
      const auto& cr = ws_->reason();
      return fmt::format("closed by client with {}{}{}", static_cast<unsigned>(cr.code),
                         cr.reason.empty() ? "" : " ", std::string_view(cr.reason.data(), cr.reason.size()));
    }
    if (ec == websocket::error::message_too_big) return "message over max_frame_bytes (1009)";
    return ec.message();
  }

  /// With mu_ held: from now on push() refuses, and the strand sends the close once the queue is empty.
  void begin_close_locked(std::uint16_t code, std::string reason) {
    closing_ = true;
    if (done_) return;
    if (reason.size() > 120) reason.resize(120);  // a close frame's reason is at most 123 bytes
    asio::post(strand_, [self = self(), code, reason = std::move(reason)]() mutable {
      self->start_close(code, std::move(reason));
    });
  }

  void start_close(std::uint16_t code, std::string reason) {
    if (finished_ || cs_) return;
    cs_ = std::make_unique<close_state>(strand_, code, std::move(reason));
    // A client that stopped reading can block the write (and so the close frame) forever.
    cs_->deadline.expires_after(kCloseDeadline);
    cs_->deadline.async_wait([self = self()](beast::error_code ec) {
      if (ec || self->finished_) return;
      self->cut_ = cut::deadline;
      self->abort_socket();
    });
    flush();
  }

  /// On the strand: write what is queued as one message, or send the close once nothing is left.
  void flush() {
    std::unique_lock lk(mu_);
    flush_posted_ = false;
    if (writing_ || done_ || !open_) return;
    if (queue_.empty()) {
      const bool send_close = closing_ && !close_sent_ && cs_;
      if (!closing_) {
        // Idle again: give the write buffers back so an idle connection stays small.
        std::vector<queued>().swap(queue_);
        wr_.reset();
      }
      lk.unlock();
      if (send_close) send_close_frame();
      return;
    }
    if (!wr_) wr_ = std::make_unique<write_state>();
    take_batch_locked();
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    lk.unlock();
    build_buffers();
    ws_->async_write(std::span<const asio::const_buffer>(wr_->buffers),
                     [self = self()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  /// Moves the oldest frames, up to kMaxWriteBytes of payload (at least one frame), into the batch.
  void take_batch_locked() {
    std::size_t bytes = 0;
    std::size_t n = 0;
    std::uint32_t droppable = 0;
    for (; n < queue_.size(); ++n) {
      const std::size_t size = queue_[n].frame->size() + (n > 0 ? 1 : 0);
      if (n > 0 && bytes + size > kMaxWriteBytes) break;
      bytes += size;
      if (queue_[n].kind == actors::traffic::droppable) ++droppable;
    }
    auto& frames = wr_->frames;
    if (n == queue_.size()) {
      frames.swap(queue_);
    } else {
      const auto split = queue_.begin() + static_cast<std::ptrdiff_t>(n);
      frames.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(split));
      queue_.erase(queue_.begin(), split);
    }
    droppable_queued_ -= droppable;
  }

  /// The payload is the frames joined by '\n'. Short frames and separators are copied into one buffer
  /// (reserved up front, so pointers into it stay valid); long frames are referenced in place.
  void build_buffers() {
    auto& w = *wr_;
    w.buffers.clear();
    w.copied.clear();
    if (w.frames.size() == 1) {
      w.buffers.emplace_back(w.frames.front().frame->data(), w.frames.front().frame->size());
      return;
    }
    std::size_t to_copy = w.frames.size() - 1;
    for (const auto& q : w.frames) {
      if (q.frame->size() < kCopyBelow) to_copy += q.frame->size();
    }
    w.copied.reserve(to_copy);
    std::size_t run_start = 0;
    auto end_run = [&] {
      if (w.copied.size() > run_start)
        w.buffers.emplace_back(w.copied.data() + run_start, w.copied.size() - run_start);
      run_start = w.copied.size();
    };
    for (std::size_t i = 0; i < w.frames.size(); ++i) {
      if (i > 0) w.copied.push_back('\n');
      const std::string& f = *w.frames[i].frame;
      if (f.size() < kCopyBelow) {
        w.copied.append(f);
      } else {
        end_run();
        w.buffers.emplace_back(f.data(), f.size());
      }
    }
    end_run();
  }

  void on_write(beast::error_code ec) {
    {
      std::lock_guard lk(mu_);
      writing_ = false;
    }
    if (wr_) wr_->frames.clear();
    if (ec) {
      fail(ec, "write", id_);
      // The read loop notices the closed socket and finishes the session.
      abort_socket();
      return;
    }
    flush();
  }

  void send_close_frame() {
    close_sent_ = true;
    close_pending_ = true;
    websocket::close_reason cr(static_cast<websocket::close_code>(cs_->code), cs_->reason);
    ws_->async_close(cr, [self = self()](beast::error_code ec) {
      self->close_pending_ = false;
      if (ec) {
        fail(ec, "close", self->id_);
        self->abort_socket();
      }
      // A paused read loop will not notice the end: the handshake is over, so finish here.
      if (self->read_ended_ || self->read_paused_) self->finish(self->describe(self->read_ec_));
    });
  }

  /// Closes the socket without lingering: a peer that does not read must not keep kernel buffers busy.
  void abort_socket() {
    if (!ws_) return;
    auto& sock = ws_->next_layer();
    if (sock.is_open()) {
      beast::error_code ignored;
      sock.set_option(asio::socket_base::linger(true, 0), ignored);
      sock.close(ignored);
    }
    // The read loop is what notices a closed socket and finishes the session: restart a paused one, also
    // when the socket was already closed by something else.
    if (read_paused_) read_again();
  }

  /// The connection is over: tell the session once, drop the handle (which breaks the link ↔ handle
  /// cycle) and give the slot back.
  void finish(const std::string& reason) {
    if (finished_) return;
    finished_ = true;
    {
      std::lock_guard lk(mu_);
      closing_ = true;
      done_ = true;
      std::vector<queued>().swap(queue_);
      droppable_queued_ = 0;
    }
    if (cs_) cs_->deadline.cancel();
    if (ws_) {
      // Beast tears the socket down after a close handshake but not after every error.
      beast::error_code ignored;
      ws_->next_layer().close(ignored);
    }
    // The socket is gone, so its slot is free before the session hears of it.
    if (counted_open_) {
      st_->ws_open.fetch_sub(1, std::memory_order_relaxed);
      counted_open_ = false;
    }
    slot_.release();
    if (handle_) {
      auto handle = std::move(handle_);
      try {
        handle->on_closed(reason);
      } catch (const std::exception& e) {
        spdlog::error("connection {}: session failed on close: {}", id_, e.what());
      }
      spdlog::info("connection {} closed: {}", id_, reason);
    }
  }

  const std::shared_ptr<server_state> st_;
  const std::uint64_t id_;

  // Strand only (and detach()).
  std::optional<websocket::stream<socket_t>> ws_;
  strand_t strand_;  // also read by push()/close() under mu_; replaced only by detach()
  beast::flat_buffer rd_buf_;
  conn_slot slot_;
  std::unique_ptr<actors::session_handle> handle_;
  std::unique_ptr<write_state> wr_;  // only while writing
  std::unique_ptr<close_state> cs_;  // only once closing
  beast::error_code read_ec_;        // why the read loop ended, for the log line
  cut cut_ = cut::no;
  bool open_ = false;
  bool close_sent_ = false;
  bool close_pending_ = false;  // async_close in flight
  bool read_ended_ = false;
  bool read_paused_ = false;                    // the session asked for no more frames until resume_reading()
  websocket::stream_base::timeout timeouts_{};  // as set at open; idle checks are off while reads pause
  bool finished_ = false;
  bool counted_open_ = false;

  // Guarded by mu_.
  std::mutex mu_;
  bool closing_ = false;
  bool done_ = false;  // the socket is gone: nothing may be posted any more
  bool writing_ = false;
  std::chrono::steady_clock::time_point write_started_;  // of the write in flight, while writing_
  bool flush_posted_ = false;
  std::uint32_t droppable_queued_ = 0;
  std::vector<queued> queue_;
};

/// An accepted socket before (or instead of) the upgrade: keep-alive HTTP requests, /healthz, the API
/// under /api/, 404s, and the 503 for connections over max_connections.
///
/// One request at a time: the header is read first (so the body limit can depend on the target and an
/// oversized Content-Length is refused before any of the body is read), then the body, then the answer
/// is written, and only then is the next request read.
///
/// Threading: runs on its strand; go_away() and force_close() post to it; deliver() may be called from
/// any thread (it touches only `mu_`-guarded state and posts); detach() as in connection.
class http_session final : public connection {
 public:
  http_session(std::shared_ptr<server_state> st, std::uint64_t id, socket_t&& socket, strand_t strand,
               conn_slot slot)
      : st_(std::move(st)),
        id_(id),
        strand_(std::move(strand)),
        buf_(kHttpBufferLimit),
        slot_(std::move(slot)) {
    stream_.emplace(std::move(socket));
  }
  ~http_session() override { st_->remove_expired(id_); }

  /// Called from the acceptor's strand; the work starts on this connection's own.
  void run(bool refuse) {
    refuse_ = refuse;
    asio::dispatch(strand_, [self = self()] { self->do_read(); });
  }

  void go_away() override {
    asio::post(strand_, [self = self()] {
      self->going_away_ = true;
      if (self->reading_ && self->stream_) self->stream_->cancel();
    });
  }
  void force_close() override {
    asio::post(strand_, [self = self()] { self->close_stream(); });
  }
  void detach() override {
    {
      std::lock_guard lk(mu_);
      detached_ = true;
      // Moving out releases the strand's implementation, which must not outlive the io_context; a late
      // API reply sees detached_ first and never posts to it.
      [[maybe_unused]] auto released = std::move(strand_);
    }
    if (stream_ && !upgraded_) {
      beast::error_code ignored;
      stream_->socket().close(ignored);
    }
    stream_.reset();
    slot_.release();
  }

 private:
  /// The API handler's `reply`: delivers at most once. If every copy is dropped unanswered (a handler bug),
  /// its destructor answers 500 so the connection does not wait forever. Holds the session alive until then.
  class api_reply {
   public:
    explicit api_reply(std::shared_ptr<http_session> s) : session_(std::move(s)) {}
    api_reply(const api_reply&) = delete;
    api_reply& operator=(const api_reply&) = delete;
    ~api_reply() {
      if (!answered_.exchange(true)) {
        spdlog::error("connection {}: the API handler dropped a request without answering", session_->id_);
        session_->deliver(internal_error());
      }
    }
    void answer(actors::http_response res) {
      if (answered_.exchange(true)) {
        spdlog::error("connection {}: the API handler answered a request twice; the second is ignored",
                      session_->id_);
        return;
      }
      session_->deliver(std::move(res));
    }

   private:
    std::shared_ptr<http_session> session_;
    std::atomic<bool> answered_{false};
  };

  static actors::http_response internal_error() {
    return {500, error_body("internal", "internal error"), {}};
  }

  std::shared_ptr<http_session> self() { return std::static_pointer_cast<http_session>(shared_from_this()); }

  /// Any thread: hands the answer to the strand, unless the server is gone.
  void deliver(actors::http_response res) noexcept {
    try {
      std::lock_guard lk(mu_);
      if (detached_) return;
      // Posted under the lock so that detach() cannot release the strand between the check and the post.
      asio::post(strand_,
                 [self = self(), res = std::move(res)]() mutable { self->on_reply(std::move(res)); });
    } catch (const std::exception& e) {
      spdlog::error("connection {}: cannot deliver an API reply: {}", id_, e.what());
    }
  }

  /// Closes the socket (if still ours) and gives the slot back; safe to call more than once.
  void close_stream() {
    if (stream_ && !upgraded_) stream_->close();
    slot_.release();
  }

  std::chrono::steady_clock::duration idle_timeout() const {
    if (st_->cfg.idle_timeout_ms == 0) return kRequestTimeout;
    return std::chrono::milliseconds(st_->cfg.idle_timeout_ms);
  }

  void do_read() {
    if (going_away_ || !stream_) {
      close_stream();
      return;
    }
    version_ = 11;
    head_ = false;  // until this request's header says otherwise (an unreadable one gets a whole answer)
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    // Decided per target once the header is in (on_header); a Content-Length is only checked at the end of
    // the header, so no limit applies before then.
    parser_->body_limit(boost::none);
    // Waiting for the next request on a keep-alive connection is idle time.
    stream_->expires_after(refuse_ ? std::chrono::steady_clock::duration(kRefusedRequestTimeout)
                                   : idle_timeout());
    reading_ = true;
    http::async_read_header(*stream_, buf_, *parser_,
                            [self = self()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    reading_ = false;
    if (ec) {
      on_read_error(ec);
      return;
    }
    auto& req = parser_->get();
    version_ = req.version();
    head_ = req.method() == http::verb::head;
    if (refuse_ || st_->stopping.load()) {
      const char* why = refuse_ ? "too many connections" : "server shutting down";
      respond(http::status::service_unavailable, error_body("unavailable", why), false, {}, true);
      return;
    }
    const std::string_view target(req.target().data(), req.target().size());
    body_limit_ = is_api(target) ? st_->cfg.max_body_bytes : kBodyLimit;
    if (const auto length = parser_->content_length(); length && *length > body_limit_) {
      too_large();
      return;
    }
    parser_->body_limit(body_limit_);
    if (parser_->is_done()) {
      on_request();
      return;
    }
    const auto expect = req[http::field::expect];
    if (version_ >= 11 && beast::iequals(expect, "100-continue")) {
      // The client waits for this before sending the body (curl does for larger bodies).
      static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
      stream_->expires_after(kRequestTimeout);
      asio::async_write(*stream_, asio::buffer(continue_line.data(), continue_line.size()),
                        [self = self()](beast::error_code ec, std::size_t) {
                          if (ec) {
                            fail(ec, "http write", self->id_);
                            self->close_stream();
                            return;
                          }
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    stream_->expires_after(kRequestTimeout);
    reading_ = true;
    http::async_read(*stream_, buf_, *parser_,
                     [self = self()](beast::error_code ec, std::size_t) { self->on_body(ec); });
  }

  void on_body(beast::error_code ec) {
    reading_ = false;
    if (ec == http::error::body_limit) {  // chunked, so only found out while reading
      too_large();
      return;
    }
    if (ec) {
      on_read_error(ec);
      return;
    }
    on_request();
  }

  void on_read_error(beast::error_code ec) {
    if (ec == http::error::end_of_stream) {
      stream_->socket().shutdown(tcp::socket::shutdown_send, ec);
      close_stream();
      return;
    }
    if (ec == beast::error::timeout || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || ec == asio::error::eof || ec == http::error::partial_message) {
      fail(ec, "http read", id_);
      close_stream();
      return;
    }
    fail(ec, "http read", id_);
    if (ec == http::error::header_limit) {
      respond(http::status::request_header_fields_too_large,
              error_body("headers_too_large", fmt::format("request headers over {} bytes", kHeaderLimit)),
              false, {}, true);
      return;
    }
    respond(http::status::bad_request, error_body("bad_request", "malformed HTTP request: " + ec.message()),
            false, {}, true);
  }

  void too_large() {
    respond(http::status::payload_too_large,
            error_body("payload_too_large", fmt::format("the request body is over {} bytes", body_limit_)),
            false, {}, true);
  }

  static bool is_api(std::string_view target) { return target.starts_with("/api/"); }

  void on_request() {
    auto& req = parser_->get();
    const std::string_view target(req.target().data(), req.target().size());
    const auto q = target.find('?');
    const std::string_view path = target.substr(0, q);
    keep_ = req.keep_alive() && !going_away_;

    if (path == "/ws") {
      if (websocket::is_upgrade(req)) {
        upgrade();
        return;
      }
      if (req.method() != http::verb::get) {
        respond(http::status::method_not_allowed, error_body("method_not_allowed", "/ws takes GET"), keep_,
                "GET");
      } else {
        respond(http::status::upgrade_required,
                error_body("upgrade_required", "/ws needs a WebSocket upgrade"), keep_);
      }
      return;
    }
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    if (path == "/healthz") {
      if (!get) {
        respond(http::status::method_not_allowed, error_body("method_not_allowed", "/healthz takes GET"),
                keep_, "GET, HEAD");
        return;
      }
      json::value body = {{"status", "ok"},
                          {"node", st_->cfg.node_id},
                          {"connections", st_->ws_open.load(std::memory_order_relaxed)}};
      respond(http::status::ok, json::serialize(body), keep_);
      return;
    }
    if (path == "/metrics" && st_->metrics) {
      if (!get) {
        respond(http::status::method_not_allowed, error_body("method_not_allowed", "/metrics takes GET"),
                keep_, "GET, HEAD");
        return;
      }
      respond(http::status::ok, st_->metrics() + server_metrics(*st_), keep_, {}, false,
              "text/plain; version=0.0.4; charset=utf-8");
      return;
    }
    if (is_api(path)) {
      serve_api(path, q == std::string_view::npos ? std::string_view{} : target.substr(q + 1));
      return;
    }
    respond(http::status::not_found, error_body("not_found", "no such target: " + std::string(path)), keep_);
  }

  void serve_api(std::string_view path, std::string_view query) {
    if (st_->api == nullptr) {
      respond(http::status::not_found, error_body("not_found", "this node serves no HTTP API"), keep_);
      return;
    }
    auto& req = parser_->get();
    actors::http_request r;
    r.method = std::string(req.method_string());
    r.path = std::string(path);
    r.query = std::string(query);
    r.content_type = std::string(req[http::field::content_type]);
    r.bearer_token = bearer_token(req[http::field::authorization]);
    r.remote_ip = remote_ip();
    r.body = std::move(req.body());

    // Held like open_mu around factory.open(): once stop() has taken it, no handle() is running or starts.
    std::shared_lock lk(st_->open_mu);
    if (st_->stopping.load()) {
      lk.unlock();
      respond(http::status::service_unavailable, error_body("unavailable", "server shutting down"), false);
      return;
    }
    auto reply = std::make_shared<api_reply>(self());
    try {
      st_->api->handle(std::move(r), [reply](actors::http_response res) { reply->answer(std::move(res)); });
    } catch (const std::exception& e) {
      spdlog::error("connection {}: the API handler threw: {}", id_, e.what());
      reply->answer(internal_error());
    }
    // Nothing is read until on_reply(): the next request waits for this answer.
  }

  std::string remote_ip() const {
    beast::error_code ec;
    const auto ep = stream_->socket().remote_endpoint(ec);
    if (ec) return {};
    const auto addr = ep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
      return asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6()).to_string();
    return addr.to_string();
  }

  /// A header the API may add: a valid name that does not touch the framing, and a value that cannot
  /// smuggle a line break into the response.
  static bool header_allowed(std::string_view name, std::string_view value) {
    if (name.empty()) return false;
    for (unsigned char c : name) {
      if (!(std::isalnum(c) ||
            std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos))
        return false;
    }
    for (std::string_view framing :
         {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}) {
      if (beast::iequals(name, framing)) return false;
    }
    return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
  }

  /// On the strand: writes the API's answer, unless the connection was cut while it was being prepared.
  void on_reply(actors::http_response r) {
    if (!stream_ || upgraded_ || !stream_->socket().is_open()) {
      close_stream();
      return;
    }
    if (r.status < 200 || r.status > 599) {
      spdlog::error("connection {}: the API answered with status {}; sending 500", id_, r.status);
      r = internal_error();
    }
    if ((r.status == 204 || r.status == 304) && !r.body.empty()) {
      spdlog::error("connection {}: the API gave a body with status {}; dropped", id_, r.status);
      r.body.clear();
    }
    res_.emplace();
    res_->version(version_);
    res_->result(r.status);
    res_->set(http::field::cache_control, "no-store");
    if (!r.body.empty()) res_->set(http::field::content_type, "application/json");
    for (const auto& [name, value] : r.headers) {
      if (!header_allowed(name, value)) {
        spdlog::error("connection {}: the API set header '{}', which is not allowed; dropped", id_, name);
        continue;
      }
      res_->set(name, value);
    }
    res_->keep_alive(keep_ && !going_away_);
    res_->body() = std::move(r.body);
    res_->prepare_payload();
    write_response(false);
  }

  void upgrade() {
    upgraded_ = true;
    // The WebSocket runs on the bare socket: its stream has its own timers, and tcp_stream's would cost
    // about 500 bytes per idle connection.
    auto ws = std::make_shared<ws_session>(st_, id_, stream_->release_socket(), strand_, std::move(slot_));
    st_->add(id_, ws);
    ws->run(parser_->get());
  }

  /// `linger`: the request may not have been read to its end (an error answer), so after the response the
  /// rest is read and discarded for a moment before closing; closing with unread input would make the
  /// kernel reset the connection, and the client could lose the response.
  void respond(http::status status, std::string body, bool keep_alive, std::string_view allow = {},
               bool linger = false, std::string_view content_type = "application/json") {
    res_.emplace(status, version_);
    res_->set(http::field::content_type, content_type);
    res_->set(http::field::cache_control, "no-store");
    if (!allow.empty()) res_->set(http::field::allow, allow);
    res_->keep_alive(keep_alive);
    res_->body() = std::move(body);
    res_->prepare_payload();
    write_response(linger);
  }

  void write_response(bool linger) {
    linger_ = linger;
    // A HEAD response says what GET would send (Content-Length included) without the body; a body here
    // would be read by a keep-alive client as the start of its next response.
    if (head_) res_->body().clear();
    stream_->expires_after(kRequestTimeout);
    http::async_write(*stream_, *res_,
                      [self = self()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    if (ec) {
      fail(ec, "http write", id_);
      close_stream();
      return;
    }
    const bool keep = res_->keep_alive() && !going_away_;
    res_.reset();
    if (keep) {
      do_read();
      return;
    }
    stream_->socket().shutdown(tcp::socket::shutdown_send, ec);
    if (!linger_) {
      close_stream();
      return;
    }
    drained_ = 0;
    stream_->expires_after(kLingerTimeout);
    drain();
  }

  /// Discards input until the client closes, kLingerBytes have gone, or kLingerTimeout passes.
  void drain() {
    buf_.clear();
    reading_ = true;
    stream_->async_read_some(buf_.prepare(kLingerChunk),
                             [self = self()](beast::error_code ec, std::size_t n) {
                               self->reading_ = false;
                               self->drained_ += n;
                               if (ec || self->going_away_ || self->drained_ > kLingerBytes) {
                                 self->close_stream();
                                 return;
                               }
                               self->drain();
                             });
  }

  const std::shared_ptr<server_state> st_;
  const std::uint64_t id_;
  // A copy, because the socket is handed away on upgrade while go_away() may still be posting to it.
  // Replaced only by detach(), under mu_.
  strand_t strand_;
  std::optional<http_stream_t> stream_;  // reset by detach()
  beast::flat_buffer buf_;
  conn_slot slot_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  std::uint64_t body_limit_ = kBodyLimit;
  std::size_t drained_ = 0;
  unsigned version_ = 11;
  bool refuse_ = false;
  bool reading_ = false;
  bool going_away_ = false;
  bool upgraded_ = false;
  bool keep_ = false;    // the request being answered allows keep-alive
  bool head_ = false;    // the request being answered is a HEAD: its response has headers only
  bool linger_ = false;  // see respond()

  // Guarded by mu_ (with strand_, see above).
  std::mutex mu_;
  bool detached_ = false;
};

/// Accepts connections, each onto its own strand. Threading: runs on the acceptor's strand.
class listener : public std::enable_shared_from_this<listener> {
 public:
  listener(asio::io_context& ioc, std::shared_ptr<server_state> st)
      : ioc_(ioc), st_(std::move(st)), acceptor_(asio::make_strand(ioc)), retry_(acceptor_.get_executor()) {}

  /// Throws std::runtime_error naming the address when it cannot listen.
  std::uint16_t open(const std::string& host, std::uint16_t port) {
    beast::error_code ec;
    tcp::endpoint ep;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) {
      ep = tcp::endpoint(addr, port);
    } else {
      tcp::resolver resolver(ioc_);
      auto results = resolver.resolve(host, std::to_string(port), ec);
      if (ec || results.empty()) throw std::runtime_error("cannot resolve " + host + ": " + ec.message());
      ep = results.begin()->endpoint();
    }
    auto check = [&](const char* what) {
      if (ec) {
        throw std::runtime_error(
            fmt::format("cannot listen on {}:{}: {}: {}", host, port, what, ec.message()));
      }
    };
    acceptor_.open(ep.protocol(), ec);
    check("open");
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    check("reuse_address");
    acceptor_.bind(ep, ec);
    check("bind");
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    check("listen");
    return acceptor_.local_endpoint().port();
  }

  void run() {
    asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->do_accept(); });
  }

  void close() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->retry_.cancel();
    });
  }

 private:
  void do_accept() {
    if (!acceptor_.is_open()) return;
    // Each connection gets its own strand: its handlers never run concurrently, whatever the thread count.
    auto strand = asio::make_strand(ioc_);
    acceptor_.async_accept(strand,
                           [self = shared_from_this(), strand](beast::error_code ec, socket_t socket) {
                             self->on_accept(ec, std::move(socket), strand);
                           });
  }

  void on_accept(beast::error_code ec, socket_t socket, const strand_t& strand) {
    if (ec == asio::error::operation_aborted || st_->stopping.load()) return;
    if (ec) {
      fail(ec, "accept");
      // Out of descriptors, typically: retrying at once would spin.
      retry_.expires_after(50ms);
      retry_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->do_accept();
      });
      return;
    }
    st_->accepted_total.fetch_add(1, std::memory_order_relaxed);
    const auto id = st_->next_id.fetch_add(1, std::memory_order_relaxed);
    const bool admitted = st_->try_acquire_slot();
    auto session = std::make_shared<http_session>(st_, id, std::move(socket), strand,
                                                  admitted ? conn_slot(st_.get()) : conn_slot());
    st_->add(id, session);
    // stop() may have taken its list of connections between the check above and add(): it set the flag
    // before, and the registry's lock orders the two, so this sees it and the connection still goes away.
    if (st_->stopping.load()) session->go_away();
    session->run(!admitted);
    do_accept();
  }

  asio::io_context& ioc_;
  std::shared_ptr<server_state> st_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
};

}  // namespace

// Member order matters: I/O objects (signal set, listener) go before the io_context that owns their
// services. The shared state is held by every session too, so it outlives whichever goes last.
struct server::impl {
  impl(const config::node_config& cfg, actors::session_factory& sessions, actors::http_handler* api,
       std::function<std::string()> metrics)
      : state(std::make_shared<server_state>(cfg, sessions, api, std::move(metrics))),
        ioc(static_cast<int>(std::max<std::uint32_t>(1, cfg.io_threads))) {}

  std::shared_ptr<server_state> state;
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::shared_ptr<listener> lst;
  std::optional<asio::signal_set> signals;
  std::vector<std::thread> threads;

  std::mutex wake_mu;
  std::condition_variable wake_cv;
  bool signalled = false;
  bool stop_requested = false;

  bool started = false;
  bool stopped = false;

  void run_thread() {
    for (;;) {
      try {
        ioc.run();
        return;
      } catch (const std::exception& e) {
        // Handlers are written not to throw; if one does, keep the loop alive rather than lose a thread.
        spdlog::error("io thread: unexpected exception: {}", e.what());
      }
    }
  }

  std::uint16_t start() {
    if (started) throw std::logic_error("server::start called twice");
    lst = std::make_shared<listener>(ioc, state);
    const auto port = lst->open(state->cfg.host, state->cfg.port);
    started = true;
    // Installed here rather than in wait_for_signal() so a signal between start() and the wait is not
    // lost to the default action.
    signals.emplace(ioc, SIGINT, SIGTERM);
    signals->async_wait([this](beast::error_code ec, int signo) {
      if (ec) return;
      spdlog::info("received signal {}", signo);
      {
        std::lock_guard lk(wake_mu);
        signalled = true;
      }
      wake_cv.notify_all();
    });
    work.emplace(ioc.get_executor());
    lst->run();
    const auto n = std::max<std::uint32_t>(1, state->cfg.io_threads);
    threads.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) threads.emplace_back([this] { run_thread(); });
    return port;
  }

  void stop_accepting() {
    if (started && !stopped) lst->close();
  }

  void request_shutdown() {
    {
      std::lock_guard lk(wake_mu);
      signalled = true;
    }
    wake_cv.notify_all();
  }

  std::size_t restart_sessions() {
    auto all = state->snapshot();  // under the registry's lock: safe from any thread
    for (auto& c : all) c->restart();
    return all.size();
  }

  void wait_for_signal() {
    std::unique_lock lk(wake_mu);
    if (!started) return;
    wake_cv.wait(lk, [&] { return signalled || stop_requested; });
  }

  std::size_t stop() {
    if (!started || stopped) return 0;
    stopped = true;
    {
      std::lock_guard lk(wake_mu);
      stop_requested = true;
    }
    wake_cv.notify_all();

    state->stopping.store(true);
    // Wait out any factory.open() or api->handle() that began before the flag was set; none can start after
    // this.
    { std::unique_lock open_lock(state->open_mu); }
    lst->close();
    for (auto& c : state->snapshot()) c->go_away();

    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(state->cfg.shutdown_timeout_ms);
    std::size_t cut = 0;
    {
      std::unique_lock lk(state->mu);
      if (!state->slots_cv.wait_until(lk, deadline, [&] { return state->tcp_open == 0; }))
        cut = state->tcp_open;
    }
    if (cut > 0) {
      for (auto& c : state->snapshot()) c->force_close();
      std::unique_lock lk(state->mu);
      state->slots_cv.wait_for(lk, kCutOffGrace, [&] { return state->tcp_open == 0; });
    }

    work.reset();
    ioc.stop();
    for (auto& t : threads) t.join();
    threads.clear();
    // Pending handlers still hold sessions, and actors may hold them longer: release their I/O objects
    // now, while the io_context that owns the underlying services is still alive.
    for (auto& c : state->snapshot()) c->detach();
    signals.reset();
    return cut;
  }
};

server::server(const config::node_config& cfg, actors::session_factory& sessions, actors::http_handler* api,
               std::function<std::string()> metrics)
    : impl_(std::make_unique<impl>(cfg, sessions, api, std::move(metrics))) {}

server::~server() {
  try {
    impl_->stop();
  } catch (const std::exception& e) {
    spdlog::error("server shutdown failed: {}", e.what());
  }
}

std::uint16_t server::start() {
  return impl_->start();
}

void server::wait_for_signal() {
  impl_->wait_for_signal();
}

void server::stop_accepting() {
  impl_->stop_accepting();
}

void server::request_shutdown() {
  impl_->request_shutdown();
}

std::size_t server::restart_sessions() {
  return impl_->restart_sessions();
}

std::size_t server::stop() {
  return impl_->stop();
}

server_stats server::stats() const {
  server_stats s;
  s.open_connections = impl_->state->ws_open.load(std::memory_order_relaxed);
  s.accepted_total = impl_->state->accepted_total.load(std::memory_order_relaxed);
  s.slow_consumers_closed = impl_->state->slow_consumers_closed.load(std::memory_order_relaxed);
  s.reads_paused = impl_->state->reads_paused.load(std::memory_order_relaxed);
  return s;
}

}  // namespace chorus::net
