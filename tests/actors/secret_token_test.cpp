// Refresh tokens: shape, uniqueness, and the digest stored in their place.
#include "actors/secret_token.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace {

using chorus::actors::new_secret_token;
using chorus::actors::token_digest;

bool base64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

TEST(SecretToken, is_43_base64url_characters_without_padding) {
  for (int i = 0; i < 100; ++i) {
    const auto t = new_secret_token();
    ASSERT_EQ(t.size(), 43u) << t;
    for (char c : t) ASSERT_TRUE(base64url_char(c)) << t;
  }
}

TEST(SecretToken, ten_thousand_are_all_different_and_use_the_whole_alphabet) {
  std::set<std::string> seen;
  std::set<char> chars;
  for (int i = 0; i < 10000; ++i) {
    auto t = new_secret_token();
    chars.insert(t.begin(), t.end());
    seen.insert(std::move(t));
  }
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_EQ(chars.size(), 64u);  // 430,000 random characters miss none of 64
}

TEST(SecretToken, digest_is_stable_lower_hex_sha256) {
  EXPECT_EQ(token_digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(token_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const auto t = new_secret_token();
  const auto d = token_digest(t);
  EXPECT_EQ(d.size(), 64u);
  EXPECT_EQ(d.find_first_not_of("0123456789abcdef"), std::string::npos) << d;
  EXPECT_EQ(token_digest(t), d);
  EXPECT_NE(token_digest(new_secret_token()), d);
  EXPECT_NE(d, t);
}

}  // namespace
