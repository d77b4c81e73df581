// The generator's Beast WebSocket client: the only file of chorus-bench that includes Beast.
#include "bench/load/client_connection.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <random>

namespace chorus::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
// The io_context's own executor type instead of the default any_io_executor: every handler of every read
// copies the executor, and the type-erased copy showed up in the generator's profile.
using socket_type = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;

// Server frames carry batches of events; at saturation a batch can be large. Generous, not unbounded.
constexpr std::size_t kReadMessageMax = 64 * 1024 * 1024;
constexpr auto kHandshakeTimeout = std::chrono::seconds(30);

// RFC 6455 5.2: FIN and opcode, then the masked length, then the key and the masked payload.
void append_masked_text_frame(std::string& out, std::string_view payload, std::uint32_t key) {
  out += static_cast<char>(0x81);
  const std::uint64_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(0x80 | n);
  } else if (n <= 0xffff) {
    out += static_cast<char>(0x80 | 126);
    for (int shift = 8; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  } else {
    out += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  }
  const char mask[4] = {static_cast<char>(key >> 24), static_cast<char>(key >> 16),
                        static_cast<char>(key >> 8), static_cast<char>(key)};
  out.append(mask, 4);
  const auto start = out.size();
  out += payload;
  for (std::size_t i = 0; i < n; ++i) out[start + i] = static_cast<char>(out[start + i] ^ mask[i % 4]);
}

class connection final : public client_connection, public std::enable_shared_from_this<connection> {
 public:
  connection(asio::io_context& ioc, std::uint32_t id, connection_listener& listener, bool coalesce)
      : ws_(ioc.get_executor()), id_(id), listener_(listener), coalesce_(coalesce) {
    // Masking keys only have to be unpredictable to intermediaries; a per-connection generator will do.
    if (coalesce_) mask_keys_.seed(std::random_device{}() ^ id);
  }

  void begin(const tcp::endpoint& endpoint, std::string host_header, std::string path, std::string bearer) {
    host_ = std::move(host_header);
    path_ = std::move(path);
    ws_.next_layer().async_connect(
        endpoint, [self = shared_from_this(), bearer = std::move(bearer)](beast::error_code ec) mutable {
          self->on_connect(ec, bearer);
        });
  }

  void send(std::string frame) override {
    if (closing_ || ended_) return;
    if (coalesce_) {
      hold(std::move(frame));
      if (open_ && !writing_ && !flush_posted_) {
        flush_posted_ = true;
        asio::post(ws_.get_executor(), [self = shared_from_this()] {
          self->flush_posted_ = false;
          if (!self->writing_ && !self->closing_) self->write_pending();
        });
      }
      return;
    }
    queue_.push_back(std::move(frame));
    if (open_ && !writing_) write_next();
  }

  void hold(std::string frame) override {
    if (!coalesce_) return send(std::move(frame));
    if (closing_ || ended_) return;
    append_masked_text_frame(pending_, frame, static_cast<std::uint32_t>(mask_keys_()));
    ++pending_frames_;
  }

  void flush() override {
    if (coalesce_ && open_ && !writing_ && !closing_) write_pending();
  }

  std::size_t queued() const override { return coalesce_ ? pending_frames_ : queue_.size(); }

  void close() override {
    if (closing_ || ended_) return;
    closing_ = true;
    if (!open_) {
      abort();
      return;
    }
    if (writing_) return;                                        // on_write closes
    if (coalesce_ && !pending_.empty()) return write_pending();  // held frames first, then on_write closes
    start_close();
  }

  void abort() override {
    if (ended_) return;
    beast::error_code ignored;
    auto& sock = ws_.next_layer();
    if (sock.is_open()) {
      sock.set_option(asio::socket_base::linger(true, 0), ignored);
      sock.close(ignored);
    }
  }

 private:
  void on_connect(beast::error_code ec, const std::string& bearer) {
    if (ec) return finish(0, ec.message());
    beast::error_code ignored;
    ws_.next_layer().set_option(tcp::no_delay(true), ignored);
    if (closing_) return abort();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = kHandshakeTimeout;
    timeouts.idle_timeout = websocket::stream_base::none();
    timeouts.keep_alive_pings = false;
    ws_.set_option(timeouts);
    ws_.set_option(
        websocket::stream_base::decorator([auth = "Bearer " + bearer](websocket::request_type& req) {
          req.set(beast::http::field::authorization, auth);
          req.set(beast::http::field::user_agent, "chorus-bench");
        }));
    ws_.read_message_max(kReadMessageMax);
    ws_.auto_fragment(false);
    ws_.async_handshake(host_, path_,
                        [self = shared_from_this()](beast::error_code ec) { self->on_handshake(ec); });
  }

  void on_handshake(beast::error_code ec) {
    if (ec) return finish(0, "upgrade: " + ec.message());
    open_ = true;
    read_next();
    listener_.on_open(id_);
    if (closing_ && !writing_) {
      start_close();
    } else if (!writing_ && has_queued()) {
      write_next();
    }
  }

  void read_next() {
    ws_.async_read(buffer_,
                   [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      if (ec == websocket::error::closed)
        return finish(ws_.reason().code, std::string(ws_.reason().reason.c_str()));
      return finish(1006, ec.message());
    }
    const auto data = buffer_.cdata();
    listener_.on_frame(id_, std::string_view(static_cast<const char*>(data.data()), data.size()));
    buffer_.consume(buffer_.size());
    if (!ended_) read_next();
  }

  bool has_queued() const { return coalesce_ ? !pending_.empty() : !queue_.empty(); }

  void write_next() {
    if (coalesce_) return write_pending();
    writing_ = true;
    inflight_ = std::move(queue_.front());
    queue_.pop_front();
    ws_.text(true);
    ws_.async_write(asio::buffer(inflight_),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  // Everything sent since the last write, as one buffer on the TCP socket under Beast.
  void write_pending() {
    if (pending_.empty()) return;
    writing_ = true;
    inflight_.swap(pending_);
    pending_.clear();
    pending_frames_ = 0;
    asio::async_write(ws_.next_layer(), asio::buffer(inflight_),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    if (ec) return;  // the read side sees the same failure and reports it
    if (has_queued() && !closing_) return write_next();
    if (closing_) start_close();
  }

  void start_close() {
    if (close_sent_) return;
    close_sent_ = true;
    // The read in flight completes with `closed` once the server answers; that reports the end.
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {});
  }

  void finish(std::uint16_t code, std::string what) {
    if (ended_) return;
    ended_ = true;
    const bool was_open = open_;
    open_ = false;
    queue_.clear();
    pending_.clear();
    pending_frames_ = 0;
    listener_.on_closed(id_, code, what, was_open);
  }

  websocket::stream<socket_type> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  std::string pending_;  // coalescing: the frames for the next write, framed and masked
  std::size_t pending_frames_ = 0;
  std::minstd_rand mask_keys_;
  std::string inflight_;
  std::string host_;
  std::string path_;
  std::uint32_t id_;
  connection_listener& listener_;
  bool coalesce_;
  bool flush_posted_ = false;
  bool open_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool ended_ = false;
};

}  // namespace

std::shared_ptr<client_connection> client_connection::start(asio::io_context& ioc,
                                                            const tcp::endpoint& endpoint,
                                                            std::string host_header, std::string path,
                                                            std::string bearer, std::uint32_t id,
                                                            connection_listener& listener, bool coalesce) {
  auto c = std::make_shared<connection>(ioc, id, listener, coalesce);
  c->begin(endpoint, std::move(host_header), std::move(path), std::move(bearer));
  return c;
}

bool resolve_endpoint(asio::io_context& ioc, const std::string& host, const std::string& port,
                      tcp::endpoint& out, std::string& error) {
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, port, ec);
  if (ec || results.empty()) {
    error = "cannot resolve " + host + ":" + port + ": " + (ec ? ec.message() : "no address");
    return false;
  }
  out = results.begin()->endpoint();
  return true;
}

}  // namespace chorus::bench
