// Argon2id hashing through libsodium and the new-password rule.
#include "actors/password.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using chorus::actors::hash_password;
using chorus::actors::password_acceptable;
using chorus::actors::password_needs_rehash;
using chorus::actors::verify_password;

TEST(Password, hash_verifies_and_names_argon2id_with_interactive_limits) {
  const auto hash = hash_password("correct horse battery staple");
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
  EXPECT_NE(hash.find("$m=65536,t=2,p=1$"), std::string::npos) << hash;
  EXPECT_TRUE(verify_password(hash, "correct horse battery staple"));
  EXPECT_FALSE(password_needs_rehash(hash));
}

TEST(Password, wrong_password_fails) {
  const auto hash = hash_password("correct horse battery staple");
  EXPECT_FALSE(verify_password(hash, "correct horse battery stapl"));
  EXPECT_FALSE(verify_password(hash, "Correct horse battery staple"));
  EXPECT_FALSE(verify_password(hash, ""));
}

TEST(Password, two_hashes_of_one_password_differ_by_salt_and_both_verify) {
  const auto a = hash_password("same password");
  const auto b = hash_password("same password");
  EXPECT_NE(a, b);
  EXPECT_TRUE(verify_password(a, "same password"));
  EXPECT_TRUE(verify_password(b, "same password"));
}

TEST(Password, bytes_after_a_nul_count) {
  const std::string with_nul("abcd\0efgh", 9);
  const auto hash = hash_password(with_nul);
  EXPECT_TRUE(verify_password(hash, with_nul));
  EXPECT_FALSE(verify_password(hash, "abcd"));
}

TEST(Password, malformed_hashes_never_verify) {
  EXPECT_FALSE(verify_password("", "password"));
  EXPECT_FALSE(verify_password("not a hash", "not a hash"));
  EXPECT_FALSE(verify_password("$argon2id$v=19$m=65536,t=2,p=1$", "password"));
  EXPECT_FALSE(verify_password(std::string(1000, '$'), "password"));
  auto good = hash_password("password1");
  EXPECT_FALSE(verify_password(good + std::string(1, '\0'), "password1"));
  good.back() = good.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verify_password(good, "password1"));
  // The fixed hash the login route checks against for unknown accounts: well-formed, matches nothing.
  EXPECT_FALSE(
      verify_password("$argon2id$v=19$m=65536,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$"
                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                      "password"));
  EXPECT_TRUE(
      password_needs_rehash("$argon2id$v=19$m=4096,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$"
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
  EXPECT_TRUE(password_needs_rehash("garbage"));
}

TEST(Password, policy_length_edges_in_bytes) {
  EXPECT_FALSE(password_acceptable(""));
  EXPECT_FALSE(password_acceptable(std::string(7, 'a')));
  EXPECT_TRUE(password_acceptable(std::string(8, 'a')));
  EXPECT_TRUE(password_acceptable(std::string(128, 'a')));
  EXPECT_FALSE(password_acceptable(std::string(129, 'a')));
  // Bytes, not characters: three 3-byte characters are 9 bytes.
  EXPECT_TRUE(password_acceptable("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"));
  EXPECT_FALSE(password_acceptable("\xe6\x97\xa5\xe6\x9c"));
}

TEST(Password, policy_accepts_any_valid_utf8) {
  EXPECT_TRUE(password_acceptable("correct horse battery staple"));
  EXPECT_TRUE(password_acceptable("p\xc3\xa4ssw\xc3\xb6rd!"));                 // ä, ö
  EXPECT_TRUE(password_acceptable("emoji \xf0\x9f\x94\x91\xf0\x9f\x94\x92"));  // U+1F511 U+1F512
  EXPECT_TRUE(password_acceptable("max \xf4\x8f\xbf\xbf!!"));                  // U+10FFFF
  EXPECT_TRUE(password_acceptable("tab\there ok"));
}

TEST(Password, policy_rejects_invalid_utf8) {
  EXPECT_FALSE(password_acceptable("abcdefg\xff"));                  // never valid
  EXPECT_FALSE(password_acceptable("abcdefg\x80"));                  // lone continuation byte
  EXPECT_FALSE(password_acceptable("abcdefg\xc3"));                  // truncated at the end
  EXPECT_FALSE(password_acceptable("abc\xc3(defgh"));                // bad continuation
  EXPECT_FALSE(password_acceptable("abcdefg\xc0\xaf"));              // overlong '/'
  EXPECT_FALSE(password_acceptable("abcdefg\xe0\x80\xaf"));          // overlong, 3 bytes
  EXPECT_FALSE(password_acceptable("abcdefg\xf0\x80\x80\xaf"));      // overlong, 4 bytes
  EXPECT_FALSE(password_acceptable("abcdefg\xed\xa0\x80"));          // U+D800, a surrogate
  EXPECT_FALSE(password_acceptable("abcdefg\xf4\x90\x80\x80"));      // U+110000
  EXPECT_FALSE(password_acceptable("abcdefg\xf8\x88\x80\x80\x80"));  // 5-byte form
}

}  // namespace
