// A test helper: captures what the code under test logs through spdlog, to count the lines it wrote.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::testing {

/// Records what the code under test logs (through spdlog's default logger) while it lives, so tests can count
/// lines such as "unreachable" and "is back".
class log_capture {
 public:
  log_capture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)) {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("test", sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~log_capture() { spdlog::set_default_logger(previous_); }

  int count(std::string_view text) const {
    int n = 0;
    for (const auto& line : sink_->last_formatted())
      if (line.find(text) != std::string::npos) ++n;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace chorus::testing
