// A real WebSocket and HTTP client for tests: blocking calls with timeouts, one JSON object per event.
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace chorus::testing {

using namespace std::chrono_literals;

/// A WebSocket client connected to 127.0.0.1. Every call blocks up to its timeout; none throws after connect.
/// Not thread-safe.
class ws_client {
 public:
  struct options {
    std::optional<std::string> bearer;  ///< sent as `Authorization: Bearer ...` on the upgrade
    std::string target = "/ws";
    int receive_buffer_bytes = 0;  ///< SO_RCVBUF before connecting; 0 leaves the default
  };

  /// Connects and completes the upgrade. Throws std::runtime_error (with the HTTP status when the
  /// upgrade was refused) on failure.
  static std::unique_ptr<ws_client> connect(std::uint16_t port, options opts);
  static std::unique_ptr<ws_client> connect(std::uint16_t port) { return connect(port, options{}); }
  ~ws_client();

  /// Sends one text / binary frame. Returns false if the connection is closed.
  bool send_text(std::string_view text);
  bool send_binary(std::string_view bytes);
  /// Serialises `obj` and sends it as one text frame.
  bool send_json(const boost::json::object& obj);

  /// The next JSON object from the server. A frame holding several `\n`-separated objects yields them one
  /// by one. Returns nullopt on timeout or when the server closed (then close_code() says how).
  std::optional<boost::json::object> next(std::chrono::milliseconds timeout = 5s);

  /// Skips objects until `match` accepts one; nullopt on timeout or close.
  std::optional<boost::json::object> next_where(const std::function<bool(const boost::json::object&)>& match,
                                                std::chrono::milliseconds timeout = 5s);

  /// Reads and discards until the server closes; returns its close code, or nullopt on timeout.
  std::optional<std::uint16_t> wait_closed(std::chrono::milliseconds timeout = 5s);

  /// The close code the server sent, once a read has seen the close (1005 if it sent none,
  /// 1006 if the TCP connection ended without a close frame).
  std::optional<std::uint16_t> close_code() const;

  /// Number of WebSocket frames (not objects) received so far.
  std::uint64_t frames_received() const;

  /// Sends a normal close (1000) and waits briefly for the server's.
  void close();

 private:
  struct impl;
  explicit ws_client(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

struct http_response {
  unsigned status = 0;
  std::string body;
  std::string content_type;
};

/// One HTTP/1.1 GET to 127.0.0.1:port. Throws std::runtime_error on connection failure.
http_response http_get(std::uint16_t port, std::string_view target, std::chrono::milliseconds timeout = 5s);

}  // namespace chorus::testing
