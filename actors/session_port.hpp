// The seam between the network layer and the session actors: plain interfaces, no CAF and no Asio.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace chorus::actors {

/// One encoded server frame (a single JSON object). A broadcast encodes it once and every
/// recipient shares the same bytes.
using frame_ptr = std::shared_ptr<const std::string>;

/// How a frame may be treated when a client falls behind.
enum class traffic {
  essential,  ///< replies, messages, membership: never dropped; a client that cannot take them is closed
  droppable,  ///< typing and presence: dropped first when the outgoing queue is full
};

/// A connection as the actors see it. Implemented by net/; every member may be called from any thread.
class client_link {
 public:
  virtual ~client_link() = default;

  /// Queues one frame for the client. Returns false when the frame was not queued: either it was
  /// droppable and the queue is full, or the connection is closing (for an essential frame that
  /// did not fit, the link has begun closing with close_code::slow_consumer).
  virtual bool push(frame_ptr frame, traffic kind) = 0;

  /// Sends a close frame with `code` after everything queued so far, then closes.
  virtual void close(std::uint16_t code, std::string reason) = 0;

  /// Starts reading again after session_handle::on_text asked to stop. Does nothing when reading was not
  /// stopped; a connection that closed meanwhile finishes instead.
  virtual void resume_reading() = 0;
};

/// What the network layer knows about a connection when it opens.
struct connection_info {
  std::uint64_t id = 0;                     ///< unique per node, for logs
  std::string remote;                       ///< "ip:port"
  std::optional<std::string> bearer_token;  ///< from `Authorization: Bearer ...` on the upgrade request
};

/// Where a connection's input goes. Implemented by actors/; net calls it from the connection's
/// strand, so calls arrive in the order the frames did.
class session_handle {
 public:
  virtual ~session_handle() = default;
  /// One text frame. Returns false when the session has as many frames waiting as it takes: the
  /// connection then reads nothing more until client_link::resume_reading(), so that a client sending
  /// faster than the node works is held back by TCP instead of queued in memory.
  virtual bool on_text(std::string frame) = 0;
  /// One binary frame (the protocol has none): counted and answered like a text frame.
  virtual bool on_binary() = 0;
  /// The connection is gone; the last call. `reason` is for logs.
  virtual void on_closed(std::string reason) = 0;
};

/// Creates the session for a new connection. Called on the connection's strand.
class session_factory {
 public:
  virtual ~session_factory() = default;
  virtual std::unique_ptr<session_handle> open(std::shared_ptr<client_link> link, connection_info info) = 0;
};

}  // namespace chorus::actors
