// Tests of the network limits added to PostgreSQL URLs (pure string work; no server).
#include "storage/pg_conninfo.hpp"

#include <gtest/gtest.h>

namespace chorus::storage {
namespace {

TEST(pg_conninfo, a_uri_gets_every_limit_as_query_parameters) {
  EXPECT_EQ(with_network_timeouts("postgresql://u@h:5/db"),
            "postgresql://u@h:5/db?connect_timeout=5&tcp_user_timeout=20000&keepalives=1&keepalives_idle=10&"
            "keepalives_interval=5&keepalives_count=3");
  EXPECT_EQ(with_network_timeouts("postgres://h/db?sslmode=disable", std::chrono::seconds(2)),
            "postgres://h/db?sslmode=disable&connect_timeout=2&tcp_user_timeout=20000&keepalives=1&"
            "keepalives_idle=10&keepalives_interval=5&keepalives_count=3");
}

TEST(pg_conninfo, a_keyword_string_gets_them_as_keywords) {
  EXPECT_EQ(
      with_network_timeouts("host=/run/pg dbname=chorus"),
      "host=/run/pg dbname=chorus connect_timeout=5 tcp_user_timeout=20000 keepalives=1 keepalives_idle=10 "
      "keepalives_interval=5 keepalives_count=3");
}

TEST(pg_conninfo, the_operators_own_settings_win) {
  const auto url = with_network_timeouts("postgresql://h/db?connect_timeout=30&keepalives=0");
  EXPECT_EQ(url.find("connect_timeout=5"), std::string::npos) << url;
  EXPECT_NE(url.find("connect_timeout=30"), std::string::npos) << url;
  EXPECT_EQ(url.find("keepalives=1"), std::string::npos) << url;
  EXPECT_NE(url.find("tcp_user_timeout=20000"), std::string::npos) << url;
}

}  // namespace
}  // namespace chorus::storage
