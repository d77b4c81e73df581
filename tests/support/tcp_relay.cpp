// The test TCP relay: one io_context thread, each relayed connection a pair of sockets pumped both ways.
#include "tests/support/tcp_relay.hpp"

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <list>
#include <thread>

namespace chorus::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

/// A client's socket and the socket to the server; either side closing closes both.
struct link : std::enable_shared_from_this<link> {
  explicit link(tcp::socket client) : client(std::move(client)), server(this->client.get_executor()) {}
  tcp::socket client;
  tcp::socket server;
  std::array<char, 16384> up{};
  std::array<char, 16384> down{};

  void close() {
    boost::system::error_code ignored;
    client.close(ignored);
    server.close(ignored);
  }

  void pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buffer) {
    from.async_read_some(asio::buffer(buffer), [self = shared_from_this(), &from, &to, &buffer](
                                                   boost::system::error_code ec, std::size_t n) {
      if (ec) return self->close();
      asio::async_write(to, asio::buffer(buffer.data(), n),
                        [self, &from, &to, &buffer](boost::system::error_code ec, std::size_t) {
                          if (ec) return self->close();
                          self->pump(from, to, buffer);
                        });
    });
  }

  void start(const tcp::endpoint& target) {
    server.async_connect(target, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return self->close();
      self->pump(self->client, self->server, self->up);
      self->pump(self->server, self->client, self->down);
    });
  }
};

}  // namespace

struct tcp_relay::impl {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  tcp::endpoint target;
  bool cut = false;  // touched on the io thread only
  std::list<std::weak_ptr<link>> links;
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec && !cut) {
        auto l = std::make_shared<link>(std::move(socket));
        links.remove_if([](const auto& w) { return w.expired(); });
        links.push_back(l);
        l->start(target);
      }  // cut: the socket closes as it goes out of scope
      accept();
    });
  }

  /// Runs `f` on the io thread and waits for it.
  template <class F>
  void on_io(F f) {
    std::promise<void> done;
    asio::post(io, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
};

tcp_relay::tcp_relay(std::string host, std::uint16_t port) : impl_(std::make_unique<impl>()) {
  impl_->target = tcp::endpoint(asio::ip::make_address(host), port);
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

tcp_relay::~tcp_relay() {
  impl_->on_io([this] {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    for (auto& w : impl_->links)
      if (auto l = w.lock()) l->close();
  });
  impl_->io.stop();
  impl_->thread.join();
}

std::uint16_t tcp_relay::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void tcp_relay::cut() {
  impl_->on_io([this] {
    impl_->cut = true;
    for (auto& w : impl_->links)
      if (auto l = w.lock()) l->close();
    impl_->links.clear();
  });
}

void tcp_relay::restore() {
  impl_->on_io([this] { impl_->cut = false; });
}

}  // namespace chorus::testing
