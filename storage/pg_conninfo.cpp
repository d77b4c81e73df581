// Adds libpq's network limits to a PostgreSQL URL, in whichever of libpq's two syntaxes it is written.
#include "storage/pg_conninfo.hpp"

#include <string_view>
#include <utility>

namespace chorus::storage {

std::string with_network_timeouts(std::string url, std::chrono::seconds connect) {
  const bool uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
  const std::pair<std::string_view, std::string> limits[] = {
      {"connect_timeout", std::to_string(connect.count())},
      {"tcp_user_timeout", "20000"},
      {"keepalives", "1"},
      {"keepalives_idle", "10"},
      {"keepalives_interval", "5"},
      {"keepalives_count", "3"},
  };
  for (const auto& [key, value] : limits) {
    // The operator's own setting wins. (A key is only ever found as itself: none of them is a part of
    // another, and URL values that contain one would be percent-encoded.)
    if (url.find(std::string(key) + "=") != std::string::npos) continue;
    if (uri)
      url += (url.find('?') == std::string::npos ? "?" : "&");
    else
      url += url.empty() ? "" : " ";
    url += std::string(key) + "=" + value;
  }
  return url;
}

}  // namespace chorus::storage
