// Parsing redis:// URLs and converting timeouts for hiredis.
#include "storage/redis_endpoint.hpp"

#include <charconv>

namespace chorus::storage {

namespace {

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned v = 0;
    if (s[i] == '%' && i + 2 < s.size() &&
        std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr == s.data() + i + 3) {
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool parse_int(std::string_view s, int& out) {
  return !s.empty() && std::from_chars(s.data(), s.data() + s.size(), out).ptr == s.data() + s.size();
}

}  // namespace

std::optional<redis_endpoint> parse_redis_url(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (!url.starts_with(scheme)) return std::nullopt;
  url.remove_prefix(scheme.size());
  redis_endpoint ep;
  std::string_view authority = url.substr(0, url.find('/'));
  if (authority.size() < url.size()) {
    std::string_view path = url.substr(authority.size() + 1);
    if (!path.empty() && (!parse_int(path, ep.db) || ep.db < 0)) return std::nullopt;
  }
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    if (auto colon = userinfo.find(':'); colon != std::string_view::npos) {
      ep.user = percent_decode(userinfo.substr(0, colon));
      ep.password = percent_decode(userinfo.substr(colon + 1));
    } else {
      ep.user = percent_decode(userinfo);
    }
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    ep.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    ep.host = std::string(authority.substr(0, colon));
    port = authority.substr(colon + 1);
  } else {
    ep.host = std::string(authority);
  }
  if (!port.empty() && (!parse_int(port, ep.port) || ep.port <= 0 || ep.port > 65535)) return std::nullopt;
  if (ep.host.empty()) ep.host = "127.0.0.1";
  return ep;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(ms).count();
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(us / 1000000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>(us % 1000000);
  return tv;
}

}  // namespace chorus::storage
