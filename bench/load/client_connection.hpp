// One generator-side WebSocket connection: connect, upgrade with a Bearer token, read frames, queue writes.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace chorus::bench {

/// Told what happens on connections; the load run implements it. Called on the io_context's one thread.
class connection_listener {
 public:
  /// The upgrade succeeded; the connection may send.
  virtual void on_open(std::uint32_t id) = 0;
  /// A whole WebSocket message from the server (one or more '\n'-separated JSON lines). `payload` is valid
  /// only during the call.
  virtual void on_frame(std::uint32_t id, std::string_view payload) = 0;
  /// The connection ended. `close_code` is the server's close code, 1006 when the TCP connection ended
  /// without one, 0 when it never opened; `what` says why for the last two.
  virtual void on_closed(std::uint32_t id, std::uint16_t close_code, std::string_view what,
                         bool was_open) = 0;

 protected:
  ~connection_listener() = default;
};

/// A WebSocket client over a plain TCP socket (no per-operation timers: a load generator has thousands of
/// connections and must spend its one core on reading). One read and at most one write in flight; frames
/// sent while a write is in flight wait in a queue. The Beast code lives in client_connection.cpp only,
/// behind this interface, so the rest of the generator compiles quickly.
///
/// Threading: every member is called on the io_context's thread; the io_context runs on one thread only.
class client_connection {
 public:
  /// Connects to `endpoint`, upgrades at `path` with `Authorization: Bearer <bearer>`, then reads until
  /// the connection ends. Errors are reported through `listener`, never thrown.
  ///
  /// `coalesce`: frames leave in batches, one TCP write each: those sent during one handler of the
  /// io_context after it returns, those held until flush(), and those sent while a write is in flight
  /// after it. The generator then frames and masks them itself, since Beast writes one message per call.
  /// That is only safe while Beast writes nothing on its own: the server must not ping (a Chorus node
  /// pings only a connection idle for half its idle_timeout_ms, which a sending connection never is).
  static std::shared_ptr<client_connection> start(boost::asio::io_context& ioc,
                                                  const boost::asio::ip::tcp::endpoint& endpoint,
                                                  std::string host_header, std::string path,
                                                  std::string bearer, std::uint32_t id,
                                                  connection_listener& listener, bool coalesce = false);
  virtual ~client_connection() = default;

  /// Queues one text frame; ignored once the connection is closing.
  virtual void send(std::string frame) = 0;
  /// Coalescing: queues one text frame for the next flush(). Otherwise the same as send().
  virtual void hold(std::string frame) = 0;
  /// Writes the held frames now, in one TCP write (or as soon as the write in flight completes).
  virtual void flush() = 0;
  /// Frames waiting behind the write in flight (or, coalescing, for the next write).
  virtual std::size_t queued() const = 0;
  /// Starts a normal close (1000) after what is queued has been written.
  virtual void close() = 0;
  /// Cuts the TCP connection at once (used at the end of a run that cannot wait).
  virtual void abort() = 0;
};

/// Resolves `host:port` (numeric addresses need no DNS). Returns false and sets `error` on failure.
bool resolve_endpoint(boost::asio::io_context& ioc, const std::string& host, const std::string& port,
                      boost::asio::ip::tcp::endpoint& out, std::string& error);

}  // namespace chorus::bench
