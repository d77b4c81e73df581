// A blocking HTTP/1.1 client for tests: any method, any headers, one call per connection or keep-alive.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace chorus::testing {

/// One response. Header names are lower-case; a repeated header keeps its last value.
struct http_result {
  unsigned status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
};

using http_headers = std::vector<std::pair<std::string, std::string>>;

/// One request to 127.0.0.1:port on a connection of its own (`Connection: close`). Host and Content-Length
/// are set; `headers` are added as given (e.g. {"Authorization", "Bearer …"}). The response is read while
/// the body is still being written, so an early answer (413) arrives even if the server stops reading.
/// Throws std::runtime_error when it cannot connect or no complete response arrives within 10 s.
http_result http_call(std::uint16_t port, std::string method, std::string target, std::string body = {},
                      http_headers headers = {});

/// A keep-alive connection: several requests in order on one socket. Not thread-safe.
class http_connection {
 public:
  /// Connects to 127.0.0.1:port. Throws std::runtime_error on failure.
  explicit http_connection(std::uint16_t port);
  ~http_connection();
  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  /// Sends one request (keep-alive) and reads its response. Throws std::runtime_error on failure, e.g. when
  /// the server closed the connection.
  http_result call(std::string method, std::string target, std::string body = {}, http_headers headers = {},
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Waits until the server closes the connection (true) or `timeout` passes (false). Reads nothing else.
  bool wait_closed(std::chrono::milliseconds timeout);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace chorus::testing
