// The test client: Beast WebSocket and HTTP over its own io_context, every blocking call bounded by run_for.
#include "tests/support/ws_client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <deque>
#include <stdexcept>

namespace chorus::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

constexpr auto kConnectTimeout = 5s;
constexpr auto kSendTimeout = 5s;
constexpr auto kCloseTimeout = 2s;

/// Runs handlers one at a time until `done()` holds or `deadline` passes. Synchronous Asio calls cannot
/// time out, so every blocking call here is an async operation driven by this loop.
template <class Done>
bool run_until(asio::io_context& ioc, steady::time_point deadline, Done done) {
  while (!done()) {
    const auto now = steady::now();
    if (now >= deadline) return false;
    if (ioc.stopped()) ioc.restart();
    if (ioc.run_one_for(deadline - now) == 0 && ioc.stopped() && !done()) {
      // Out of work: nothing pending can make `done` true any more.
      return done();
    }
  }
  return true;
}

}  // namespace

struct ws_client::impl {
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  beast::flat_buffer buffer;
  std::deque<json::object> objects;
  std::optional<std::uint16_t> code;
  std::uint64_t frames = 0;
  bool read_pending = false;
  bool write_pending = false;
  bool ended = false;  // the read side saw the close or an error

  /// Keeps one read outstanding across calls: a read that timed out stays pending and is picked up by
  /// the next call, so no frame is lost and the stream is never cancelled mid-frame.
  void ensure_read() {
    if (read_pending || ended) return;
    read_pending = true;
    ws.async_read(buffer, [this](beast::error_code ec, std::size_t) {
      read_pending = false;
      if (ec) {
        ended = true;
        if (ec == websocket::error::closed) {
          const auto c = static_cast<std::uint16_t>(ws.reason().code);
          code = c == 0 ? std::uint16_t{1005} : c;
        } else if (const auto c = static_cast<std::uint16_t>(ws.reason().code); c != 0) {
          // The close frame arrived but the reply or teardown failed (the server may already have
          // reset the connection, as Beast does after failing one): the code the server sent still counts.
          code = c;
        } else {
          code = 1006;
        }
        return;
      }
      ++frames;
      const auto text = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      std::string_view rest = text;
      while (!rest.empty()) {
        const auto nl = rest.find('\n');
        const auto line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        if (line.empty()) continue;
        boost::system::error_code jec;
        auto v = json::parse(line, jec);
        if (jec || !v.is_object()) {
          ADD_FAILURE() << "server sent a line that is not a JSON object: " << line;
          continue;
        }
        objects.push_back(std::move(v.as_object()));
      }
    });
  }

  bool write(std::string_view bytes, bool text) {
    if (ended) return false;
    const auto deadline = steady::now() + kSendTimeout;
    // A previous write that timed out must finish before another may start.
    if (!run_until(ioc, deadline, [&] { return !write_pending; })) return false;
    beast::error_code result;
    bool done = false;
    write_pending = true;
    ws.text(text);
    ws.async_write(asio::buffer(bytes.data(), bytes.size()), [&, this](beast::error_code ec, std::size_t) {
      write_pending = false;
      result = ec;
      done = true;
    });
    if (!run_until(ioc, deadline, [&] { return done; })) {
      // The handler refers to this frame's locals: end the connection so it runs (with an error) now.
      beast::get_lowest_layer(ws).close();
      run_until(ioc, steady::now() + kSendTimeout, [&] { return done; });
      return false;
    }
    return !result;
  }
};

ws_client::ws_client(std::unique_ptr<impl> impl) : impl_(std::move(impl)) {}

ws_client::~ws_client() {
  // Let pending handlers run with errors before the impl they point into goes away.
  beast::error_code ignored;
  beast::get_lowest_layer(impl_->ws).socket().close(ignored);
  impl_->ioc.restart();
  impl_->ioc.run_for(1s);
}

std::unique_ptr<ws_client> ws_client::connect(std::uint16_t port, options opts) {
  auto im = std::make_unique<impl>();
  auto& sock = beast::get_lowest_layer(im->ws).socket();
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  if (opts.receive_buffer_bytes > 0) {
    // Must precede connect: the window is negotiated during the handshake.
    sock.open(ep.protocol());
    sock.set_option(asio::socket_base::receive_buffer_size(opts.receive_buffer_bytes));
  }
  const auto deadline = steady::now() + kConnectTimeout;

  beast::error_code result;
  bool done = false;
  beast::get_lowest_layer(im->ws).async_connect(ep, [&](beast::error_code ec) {
    result = ec;
    done = true;
  });
  if (!run_until(im->ioc, deadline, [&] { return done; })) throw std::runtime_error("connect timed out");
  if (result) throw std::runtime_error("connect failed: " + result.message());
  // Small test frames would otherwise wait for delayed ACKs (40 ms each on Linux loopback).
  sock.set_option(tcp::no_delay(true), result);

  if (opts.bearer) {
    im->ws.set_option(websocket::stream_base::decorator([token = *opts.bearer](websocket::request_type& req) {
      req.set(http::field::authorization, "Bearer " + token);
    }));
  }
  websocket::response_type res;
  done = false;
  im->ws.async_handshake(res, "127.0.0.1:" + std::to_string(port), opts.target, [&](beast::error_code ec) {
    result = ec;
    done = true;
  });
  if (!run_until(im->ioc, deadline, [&] { return done; })) throw std::runtime_error("upgrade timed out");
  if (result) {
    if (result == websocket::error::upgrade_declined) {
      throw std::runtime_error("upgrade refused: HTTP " + std::to_string(res.result_int()) + " " +
                               res.body());
    }
    throw std::runtime_error("upgrade failed: " + result.message());
  }
  return std::unique_ptr<ws_client>(new ws_client(std::move(im)));
}

bool ws_client::send_text(std::string_view text) {
  return impl_->write(text, true);
}

bool ws_client::send_binary(std::string_view bytes) {
  return impl_->write(bytes, false);
}

bool ws_client::send_json(const boost::json::object& obj) {
  return impl_->write(json::serialize(obj), true);
}

std::optional<boost::json::object> ws_client::next(std::chrono::milliseconds timeout) {
  return next_where([](const boost::json::object&) { return true; }, timeout);
}

std::optional<boost::json::object> ws_client::next_where(
    const std::function<bool(const boost::json::object&)>& match, std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  auto& im = *impl_;
  for (;;) {
    while (!im.objects.empty()) {
      auto obj = std::move(im.objects.front());
      im.objects.pop_front();
      if (match(obj)) return obj;
    }
    if (im.ended) return std::nullopt;
    im.ensure_read();
    if (!run_until(im.ioc, deadline, [&] { return !im.objects.empty() || im.ended; })) return std::nullopt;
  }
}

std::optional<std::uint16_t> ws_client::wait_closed(std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  auto& im = *impl_;
  while (!im.ended) {
    im.objects.clear();
    im.ensure_read();
    if (!run_until(im.ioc, deadline, [&] { return !im.objects.empty() || im.ended; })) return std::nullopt;
  }
  im.objects.clear();
  return im.code;
}

std::optional<std::uint16_t> ws_client::close_code() const {
  return impl_->code;
}

std::uint64_t ws_client::frames_received() const {
  return impl_->frames;
}

void ws_client::close() {
  auto& im = *impl_;
  if (im.ended) return;
  const auto deadline = steady::now() + kCloseTimeout;
  if (!run_until(im.ioc, deadline, [&] { return !im.write_pending; })) return;
  bool done = false;
  im.ws.async_close(websocket::close_code::normal, [&](beast::error_code) { done = true; });
  // With a read pending, that read receives the server's close; either way wait for both to settle.
  run_until(im.ioc, deadline, [&] { return done && !im.read_pending; });
  if (!done) {
    beast::get_lowest_layer(im.ws).close();
    run_until(im.ioc, steady::now() + kCloseTimeout, [&] { return done; });
  }
  im.ended = true;
  if (!im.code) {
    const auto c = static_cast<std::uint16_t>(im.ws.reason().code);
    im.code = c == 0 ? std::uint16_t{1005} : c;
  }
}

http_response http_get(std::uint16_t port, std::string_view target, std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);
  beast::error_code ec;
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  stream.async_connect(ep, [&](beast::error_code e) { ec = e; });
  ioc.run();
  if (ec) throw std::runtime_error("http_get: connect failed: " + ec.message());

  http::request<http::empty_body> req{http::verb::get, std::string(target), 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  req.set(http::field::connection, "close");
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::async_write(stream, req, [&](beast::error_code e, std::size_t) {
    ec = e;
    if (e) return;
    http::async_read(stream, buffer, res, [&](beast::error_code e2, std::size_t) { ec = e2; });
  });
  ioc.restart();
  ioc.run();
  if (ec) throw std::runtime_error("http_get " + std::string(target) + ": " + ec.message());
  return http_response{res.result_int(), res.body(), std::string(res[http::field::content_type])};
}

}  // namespace chorus::testing
