// The seam between the network layer and the HTTP API: plain request/response values, no CAF and no Asio.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chorus::actors {

/// One HTTP API request as the network layer read it; the body is complete and within max_body_bytes.
struct http_request {
  std::string method;                       ///< "GET", "POST", "PATCH", "DELETE", ...
  std::string path;                         ///< percent-decoding is the handler's job; no query string
  std::string query;                        ///< what followed '?', undecoded; empty when none
  std::string body;                         ///< raw bytes
  std::string content_type;                 ///< the Content-Type header, or empty
  std::optional<std::string> bearer_token;  ///< from `Authorization: Bearer ...`
  std::string remote_ip;                    ///< the peer's address, without the port
};

/// The answer. The body is JSON (`application/json`) unless it is empty (204).
struct http_response {
  unsigned status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers, e.g. {"Retry-After", "3"}
};

/// Where `/api/...` requests go. Implemented by actors/; net calls it from the connection's strand and
/// reads nothing else from that connection until `reply` has been called (exactly once, from any thread).
class http_handler {
 public:
  virtual ~http_handler() = default;
  virtual void handle(http_request request, std::function<void(http_response)> reply) = 0;
};

}  // namespace chorus::actors
