// The test HTTP client: Beast over its own io_context; reads and writes run together, bounded by a deadline.
#include "tests/support/http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <functional>
#include <stdexcept>

namespace chorus::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr std::uint64_t kResponseBodyLimit = 64 * 1024 * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

http::request<http::string_body> make_request(std::uint16_t port, std::string method, std::string target,
                                              std::string body, const http_headers& headers,
                                              bool keep_alive) {
  http::request<http::string_body> req;
  req.version(11);
  req.method_string(method);
  req.target(target);
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = std::move(body);
  req.keep_alive(keep_alive);
  // Content-Length for any body, and for an empty one only where a body is expected.
  if (!req.body().empty() || (method != "GET" && method != "HEAD" && method != "DELETE"))
    req.prepare_payload();
  return req;
}

http_result to_result(http::response<http::string_body>&& res) {
  http_result out;
  out.status = res.result_int();
  for (const auto& f : res) out.headers[lower(f.name_string())] = std::string(f.value());
  out.body = std::move(res.body());
  return out;
}

void connect(asio::io_context& ioc, beast::tcp_stream& stream, std::uint16_t port) {
  beast::error_code ec = asio::error::would_block;
  stream.expires_after(kConnectTimeout);
  stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                       [&](beast::error_code e) { ec = e; });
  ioc.restart();
  ioc.run();
  if (ec)
    throw std::runtime_error("http: connect to port " + std::to_string(port) + " failed: " + ec.message());
  beast::error_code ignored;
  stream.socket().set_option(tcp::no_delay(true), ignored);
}

/// Writes `req` while reading the response; returns once the response is complete (even if the write then
/// failed, as when a server answers early and stops reading). Throws when no response arrived.
http_result exchange(asio::io_context& ioc, beast::tcp_stream& stream, beast::flat_buffer& buffer,
                     const http::request<http::string_body>& req, std::chrono::milliseconds timeout,
                     const std::string& what) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(kResponseBodyLimit);
  if (req.method() == http::verb::head) parser.skip(true);
  beast::error_code write_ec, read_ec;
  bool read_done = false;
  bool write_done = false;
  stream.expires_after(timeout);
  http::async_write(stream, req, [&](beast::error_code e, std::size_t) {
    write_ec = e;
    write_done = true;
  });
  http::async_read(stream, buffer, parser, [&](beast::error_code e, std::size_t) {
    read_ec = e;
    read_done = true;
    // An early answer: the rest of the body is not wanted (and the server may never read it).
    if (!write_done) stream.socket().cancel(e);
  });
  ioc.restart();
  ioc.run();
  if (!read_done || read_ec) {
    throw std::runtime_error(what + ": no response: " + (read_ec ? read_ec.message() : "timeout") +
                             (write_ec ? " (write: " + write_ec.message() + ")" : ""));
  }
  return to_result(parser.release());
}

}  // namespace

http_result http_call(std::uint16_t port, std::string method, std::string target, std::string body,
                      http_headers headers) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  connect(ioc, stream, port);
  const auto what = method + " " + target;
  auto req = make_request(port, std::move(method), std::move(target), std::move(body), headers, false);
  beast::flat_buffer buffer;
  auto result = exchange(ioc, stream, buffer, req, std::chrono::seconds(10), what);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return result;
}

struct http_connection::impl {
  explicit impl(std::uint16_t p) : port(p) {}
  std::uint16_t port;
  asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
};

http_connection::http_connection(std::uint16_t port) : impl_(std::make_unique<impl>(port)) {
  connect(impl_->ioc, impl_->stream, port);
}

http_connection::~http_connection() {
  beast::error_code ignored;
  impl_->stream.socket().close(ignored);
}

http_result http_connection::call(std::string method, std::string target, std::string body,
                                  http_headers headers, std::chrono::milliseconds timeout) {
  const auto what = method + " " + target;
  auto req = make_request(impl_->port, std::move(method), std::move(target), std::move(body), headers, true);
  return exchange(impl_->ioc, impl_->stream, impl_->buffer, req, timeout, what);
}

bool http_connection::wait_closed(std::chrono::milliseconds timeout) {
  auto& im = *impl_;
  bool closed = false;
  std::function<void()> read_more;
  char scratch[512];
  read_more = [&] {
    im.stream.async_read_some(asio::buffer(scratch), [&](beast::error_code ec, std::size_t) {
      if (ec == beast::error::timeout) return;
      if (ec) {
        closed = true;
        return;
      }
      read_more();  // data the server sent unasked is skipped
    });
  };
  im.stream.expires_after(timeout);
  read_more();
  im.ioc.restart();
  im.ioc.run();
  return closed;
}

}  // namespace chorus::testing
