// The generator's Beast WebSocket client: the only file of chorus-bench that includes Beast.
#include "bench/load/client_connection.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>

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

class connection final : public client_connection, public std::enable_shared_from_this<connection> {
 public:
  connection(asio::io_context& ioc, std::uint32_t id, connection_listener& listener)
      : ws_(ioc.get_executor()), id_(id), listener_(listener) {}

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
    queue_.push_back(std::move(frame));
    if (open_ && !writing_) write_next();
  }

  std::size_t queued() const override { return queue_.size(); }

  void close() override {
    if (closing_ || ended_) return;
    closing_ = true;
    if (!open_) {
      abort();
      return;
    }
    if (!writing_) start_close();
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
    } else if (!queue_.empty() && !writing_) {
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

  void write_next() {
    writing_ = true;
    inflight_ = std::move(queue_.front());
    queue_.pop_front();
    ws_.text(true);
    ws_.async_write(asio::buffer(inflight_),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    if (ec) return;  // the read side sees the same failure and reports it
    if (!queue_.empty() && !closing_) return write_next();
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
    listener_.on_closed(id_, code, what, was_open);
  }

  websocket::stream<socket_type> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  std::string inflight_;
  std::string host_;
  std::string path_;
  std::uint32_t id_;
  connection_listener& listener_;
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
                                                            connection_listener& listener) {
  auto c = std::make_shared<connection>(ioc, id, listener);
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
