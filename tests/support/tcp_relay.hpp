// A TCP relay for tests: stands between one process and a server, so that a test can cut that process off
// from the server (and only that process) and connect it again.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace chorus::testing {

/// Accepts connections on a free port of 127.0.0.1 and forwards each to `host`:`port`, both ways, on a
/// thread of its own. While cut, every relayed connection is closed and new ones are closed as soon as they
/// are accepted: to the client it looks like a server that drops it, as after a network cut.
class tcp_relay {
 public:
  tcp_relay(std::string host, std::uint16_t port);
  ~tcp_relay();
  tcp_relay(const tcp_relay&) = delete;
  tcp_relay& operator=(const tcp_relay&) = delete;

  /// The port clients connect to instead of the server's.
  std::uint16_t port() const;

  /// Closes every relayed connection and refuses new ones until restore(). Done when it returns.
  void cut();
  void restore();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace chorus::testing
