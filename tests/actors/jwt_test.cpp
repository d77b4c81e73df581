// Tests for HS256 JWT minting and verification, checked against independently computed and foreign tokens.
#include "actors/jwt.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace chorus::actors::jwt {
// Lets GoogleTest print failures by name instead of as raw bytes.
void PrintTo(failure f, std::ostream* os) {
  *os << describe(f);
}
}  // namespace chorus::actors::jwt

namespace {

namespace jwt = chorus::actors::jwt;
using jwt::failure;

// Independent of jwt.cpp on purpose: OpenSSL's standard base64, then translated to the URL alphabet.
std::string b64url(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

std::string hmac(const EVP_MD* md, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  static const unsigned char empty_key = 0;
  const void* key_ptr = key.empty() ? static_cast<const void*>(&empty_key) : key.data();
  HMAC(md, key_ptr, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

// Signs arbitrary header and payload text, so tests can reach the claim checks with crafted JSON.
std::string sign(std::string_view header_json, std::string_view payload_json, std::string_view secret,
                 const EVP_MD* md = EVP_sha256()) {
  std::string input = b64url(header_json) + "." + b64url(payload_json);
  return input + "." + b64url(hmac(md, secret, input));
}

constexpr std::string_view secret = "0123456789abcdef0123456789abcdef";
constexpr std::string_view hs256_header = R"({"alg":"HS256","typ":"JWT"})";
constexpr std::int64_t now = 1700000000;

std::optional<failure> failure_of(const std::variant<jwt::claims, failure>& result) {
  if (const auto* f = std::get_if<failure>(&result)) return *f;
  return std::nullopt;
}

std::vector<std::string> split(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t dot; (dot = token.find('.', start)) != std::string::npos; start = dot + 1) {
    parts.push_back(token.substr(start, dot - start));
  }
  parts.push_back(token.substr(start));
  return parts;
}

TEST(Jwt, MintedTokenVerifies) {
  const std::string token = jwt::mint(secret, "alice", now, 3600);
  const auto result = jwt::verify(token, secret, now);
  ASSERT_TRUE(std::holds_alternative<jwt::claims>(result)) << describe(*failure_of(result));
  EXPECT_EQ(std::get<jwt::claims>(result).subject, "alice");
  EXPECT_EQ(std::get<jwt::claims>(result).expires_at, now + 3600);
  EXPECT_FALSE(failure_of(jwt::verify(token, secret, now + 3599)));
}

TEST(Jwt, MintMatchesIndependentComputation) {
  const std::string input =
      b64url(hs256_header) + "." + b64url(R"({"sub":"alice","iat":1700000000,"exp":1700003600})");
  const std::string expected = input + "." + b64url(hmac(EVP_sha256(), secret, input));
  EXPECT_EQ(jwt::mint(secret, "alice", 1700000000, 3600), expected);
}

TEST(Jwt, MintWorksWithEmptySecret) {
  const std::string token = jwt::mint("", "alice", now, 60);
  EXPECT_FALSE(failure_of(jwt::verify(token, "", now)));
  EXPECT_EQ(failure_of(jwt::verify(token, "x", now)), failure::bad_signature);
}

// Generated outside Chorus with Python's hmac/hashlib/base64 and json.dumps (note the spaces and key order).
TEST(Jwt, VerifiesForeignToken) {
  constexpr std::string_view token =
      "eyJ0eXAiOiAiSldUIiwgImFsZyI6ICJIUzI1NiJ9."
      "eyJzdWIiOiAiY2Fyb2wuc21pdGgtMiIsICJpYXQiOiAxNzAwMDAwMDAwLCAiZXhwIjogMTkwMDAwMDAwMH0."
      "tqh4vrF9j_Vvgp3kEAHoOka71fCWxTU9Tgb-5DcoiXc";
  const auto result = jwt::verify(token, "python-independent-secret", now);
  ASSERT_TRUE(std::holds_alternative<jwt::claims>(result)) << describe(*failure_of(result));
  EXPECT_EQ(std::get<jwt::claims>(result).subject, "carol.smith-2");
  EXPECT_EQ(std::get<jwt::claims>(result).expires_at, 1900000000);
  EXPECT_EQ(failure_of(jwt::verify(token, "python-independent-secreT", now)), failure::bad_signature);
  EXPECT_EQ(failure_of(jwt::verify(token, "python-independent-secret", 1900000000)), failure::expired);
}

// The jwt.io example: its signature is good, so reaching missing_expiry proves the HMAC matched.
TEST(Jwt, JwtIoExampleHasNoExpiry) {
  constexpr std::string_view token =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
  EXPECT_EQ(failure_of(jwt::verify(token, "your-256-bit-secret", now)), failure::missing_expiry);
  EXPECT_EQ(failure_of(jwt::verify(token, "my-256-bit-secret", now)), failure::bad_signature);
}

TEST(Jwt, TamperedPayloadFailsSignature) {
  const std::string token = jwt::mint(secret, "alice", now, 3600);
  auto parts = split(token);
  ASSERT_EQ(parts.size(), 3u);
  ASSERT_EQ(parts[1], b64url(R"({"sub":"alice","iat":1700000000,"exp":1700003600})"));
  parts[1] = b64url(R"({"sub":"alicf","iat":1700000000,"exp":1700003600})");
  EXPECT_EQ(failure_of(jwt::verify(parts[0] + "." + parts[1] + "." + parts[2], secret, now)),
            failure::bad_signature);
}

TEST(Jwt, TamperedHeaderOrSignatureFails) {
  const auto parts = split(jwt::mint(secret, "alice", now, 3600));
  ASSERT_EQ(parts.size(), 3u);
  const std::string header = b64url(R"({"alg":"HS256","typ":"JWS"})");
  EXPECT_EQ(failure_of(jwt::verify(header + "." + parts[1] + "." + parts[2], secret, now)),
            failure::bad_signature);
  std::string signature = parts[2];
  signature[0] = signature[0] == 'A' ? 'B' : 'A';
  EXPECT_EQ(failure_of(jwt::verify(parts[0] + "." + parts[1] + "." + signature, secret, now)),
            failure::bad_signature);
  // A signature of the wrong length must be refused before any comparison.
  EXPECT_EQ(failure_of(jwt::verify(parts[0] + "." + parts[1] + "." + signature.substr(0, 40), secret, now)),
            failure::bad_signature);
  EXPECT_EQ(failure_of(jwt::verify(parts[0] + "." + parts[1] + ".", secret, now)), failure::bad_signature);
  // The right MAC followed by extra bytes: a prefix comparison would accept it.
  const std::string input = parts[0] + "." + parts[1];
  EXPECT_EQ(
      failure_of(jwt::verify(input + "." + b64url(hmac(EVP_sha256(), secret, input) + "x"), secret, now)),
      failure::bad_signature);
}

TEST(Jwt, WrongSecretFailsSignature) {
  const std::string token = jwt::mint(secret, "alice", now, 3600);
  EXPECT_EQ(failure_of(jwt::verify(token, "0123456789abcdef0123456789abcdeF", now)), failure::bad_signature);
  EXPECT_EQ(failure_of(jwt::verify(token, "", now)), failure::bad_signature);
}

TEST(Jwt, ExpiryHasNoLeeway) {
  const std::string token = jwt::mint(secret, "alice", now, 60);
  EXPECT_FALSE(failure_of(jwt::verify(token, secret, now + 59)));
  EXPECT_EQ(failure_of(jwt::verify(token, secret, now + 60)), failure::expired);
  EXPECT_EQ(failure_of(jwt::verify(token, secret, now + 61)), failure::expired);
  EXPECT_EQ(failure_of(jwt::verify(jwt::mint(secret, "alice", now, 0), secret, now)), failure::expired);
  EXPECT_EQ(failure_of(jwt::verify(jwt::mint(secret, "alice", now, -10), secret, now)), failure::expired);
}

TEST(Jwt, AlgNoneIsRefused) {
  constexpr std::string_view payload = R"({"sub":"alice","exp":1900000000})";
  const std::string unsigned_input = b64url(R"({"alg":"none","typ":"JWT"})") + "." + b64url(payload);
  // The classic forgery: empty signature part.
  EXPECT_EQ(failure_of(jwt::verify(unsigned_input + ".", secret, now)), failure::wrong_algorithm);
  // Even with a signature that is valid under the real secret.
  EXPECT_EQ(failure_of(jwt::verify(sign(R"({"alg":"none","typ":"JWT"})", payload, secret), secret, now)),
            failure::wrong_algorithm);
  // Without the third part at all it is not a JWS.
  EXPECT_EQ(failure_of(jwt::verify(unsigned_input, secret, now)), failure::malformed);
}

TEST(Jwt, OtherAlgorithmsAreRefused) {
  constexpr std::string_view payload = R"({"sub":"alice","exp":1900000000})";
  EXPECT_EQ(failure_of(jwt::verify(sign(R"({"alg":"HS512","typ":"JWT"})", payload, secret, EVP_sha512()),
                                   secret, now)),
            failure::wrong_algorithm);
  for (std::string_view header : {R"({"alg":"HS512"})", R"({"alg":"hs256"})", R"({"alg":"None"})",
                                  R"({"alg":"RS256"})", R"({"alg":"HS256 "})", R"({"alg":256})",
                                  R"({"alg":null})", R"({"alg":["HS256"]})", R"({"typ":"JWT"})", "{}"}) {
    EXPECT_EQ(failure_of(jwt::verify(sign(header, payload, secret), secret, now)), failure::wrong_algorithm)
        << header;
  }
  // Minimal header without typ is fine.
  EXPECT_FALSE(failure_of(jwt::verify(sign(R"({"alg":"HS256"})", payload, secret), secret, now)));
}

TEST(Jwt, SubjectMustBeValidUserId) {
  for (std::string_view payload : {
           R"({"exp":1900000000})",
           R"({"sub":123,"exp":1900000000})",
           R"({"sub":null,"exp":1900000000})",
           R"({"sub":["alice"],"exp":1900000000})",
           R"({"sub":{"id":"alice"},"exp":1900000000})",
           R"({"sub":"","exp":1900000000})",
           R"({"sub":"-alice","exp":1900000000})",
           R"({"sub":"al ice","exp":1900000000})",
           R"({"sub":"alice\n","exp":1900000000})",
           R"({"sub":"al\u0000ice","exp":1900000000})",
           R"({"sub":"\u00e9lodie","exp":1900000000})",
       }) {
    EXPECT_EQ(failure_of(jwt::verify(sign(hs256_header, payload, secret), secret, now)),
              failure::missing_subject)
        << payload;
  }
  const std::string long_id(65, 'a');
  EXPECT_EQ(failure_of(jwt::verify(
                sign(hs256_header, R"({"sub":")" + long_id + R"(","exp":1900000000})", secret), secret, now)),
            failure::missing_subject);
}

TEST(Jwt, MintEscapesSubject) {
  // A hostile subject must not inject claims; it stays one (invalid) string.
  const std::string token = jwt::mint(secret, R"(x","sub":"admin)", now, 60);
  EXPECT_EQ(failure_of(jwt::verify(token, secret, now)), failure::missing_subject);
}

TEST(Jwt, ExpiryMustBeIntegral) {
  for (std::string_view payload : {
           R"({"sub":"alice"})",
           R"({"sub":"alice","exp":"1900000000"})",
           R"({"sub":"alice","exp":null})",
           R"({"sub":"alice","exp":true})",
           R"({"sub":"alice","exp":[1900000000]})",
           R"({"sub":"alice","exp":1900000000.5})",
           R"({"sub":"alice","exp":1e300})",
           R"({"sub":"alice","exp":18446744073709551615})",
       }) {
    EXPECT_EQ(failure_of(jwt::verify(sign(hs256_header, payload, secret), secret, now)),
              failure::missing_expiry)
        << payload;
  }
}

TEST(Jwt, IntegralDoubleExpiryIsAccepted) {
  for (std::string_view payload :
       {R"({"sub":"alice","exp":1900000000.0})", R"({"sub":"alice","exp":1.9e9})"}) {
    const auto result = jwt::verify(sign(hs256_header, payload, secret), secret, now);
    ASSERT_TRUE(std::holds_alternative<jwt::claims>(result)) << payload;
    EXPECT_EQ(std::get<jwt::claims>(result).expires_at, 1900000000);
  }
  EXPECT_EQ(
      failure_of(jwt::verify(sign(hs256_header, R"({"sub":"alice","exp":1.7e9})", secret), secret, now)),
      failure::expired);
}

TEST(Jwt, GarbageIsMalformed) {
  const auto parts = split(jwt::mint(secret, "alice", now, 3600));
  ASSERT_EQ(parts.size(), 3u);
  const std::string good_tail = "." + parts[1] + "." + parts[2];
  const std::vector<std::string> inputs = {
      "",
      ".",
      "..",
      "a.b",
      "a.b.c.d",
      parts[0] + "." + parts[1] + "." + parts[2] + ".",
      "!!!!" + good_tail,
      parts[0] + "." + parts[1] + "*." + parts[2],
      " " + parts[0] + good_tail,
      parts[0] + "=" + good_tail,                                      // padding
      parts[0] + "." + parts[1] + "." + parts[2] + "=",                // padding on the signature
      parts[0] + "A" + good_tail,                                      // length 1 mod 4 is impossible
      parts[0] + "." + parts[1] + "." + parts[2].substr(0, 42) + "B",  // non-canonical final character
      "." + parts[1] + "." + parts[2],                                 // empty header
      parts[0] + ".." + parts[2],                                      // empty payload
      b64url("[]") + good_tail,                                        // header not an object
      b64url(R"("HS256")") + good_tail,
      b64url("{") + good_tail,                    // header not JSON
      b64url(R"({"alg":"HS256",})") + good_tail,  // trailing comma is not JSON
      parts[0] + "." + b64url("not json") + "." + parts[2],
  };
  for (const std::string& input : inputs) {
    EXPECT_EQ(failure_of(jwt::verify(input, secret, now)), failure::malformed) << '"' << input << '"';
  }
}

TEST(Jwt, SignedNonObjectPayloadIsMalformed) {
  for (std::string_view payload : {"[]", "\"alice\"", "42", "null"}) {
    EXPECT_EQ(failure_of(jwt::verify(sign(hs256_header, payload, secret), secret, now)), failure::malformed)
        << payload;
  }
}

TEST(Jwt, OversizedTokenIsMalformed) {
  const std::string big =
      sign(hs256_header, R"({"sub":"alice","exp":1900000000,"pad":")" + std::string(9 * 1024, 'x') + R"("})",
           secret);
  EXPECT_EQ(failure_of(jwt::verify(big, secret, now)), failure::malformed);
  // Right at the boundary: up to 8 KiB is accepted, anything longer refused.
  bool saw_limit = false;
  for (std::size_t pad = 6000; pad < 6200; ++pad) {
    const std::string token = sign(
        hs256_header, R"({"sub":"alice","exp":1900000000,"pad":")" + std::string(pad, 'x') + R"("})", secret);
    const auto result = failure_of(jwt::verify(token, secret, now));
    if (token.size() <= 8192) {
      EXPECT_FALSE(result) << token.size();
    } else {
      EXPECT_EQ(result, failure::malformed) << token.size();
    }
    saw_limit = saw_limit || token.size() == 8192;
  }
  EXPECT_TRUE(saw_limit);
}

TEST(Jwt, DescribeEveryFailure) {
  const failure all[] = {failure::malformed, failure::wrong_algorithm, failure::bad_signature,
                         failure::expired,   failure::missing_subject, failure::missing_expiry};
  std::vector<std::string_view> seen;
  for (failure f : all) {
    const std::string_view text = jwt::describe(f);
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(std::find(seen.begin(), seen.end(), text), seen.end()) << text;
    seen.push_back(text);
  }
  EXPECT_EQ(jwt::describe(failure::bad_signature), "token signature does not match");
}

TEST(Jwt, ValidUserIdTable) {
  struct row {
    std::string user;
    bool valid;
  };
  const row rows[] = {
      {"a", true},
      {"7", true},
      {"alice", true},
      {"Alice_Smith-2.0", true},
      {"0xdeadbeef", true},
      {std::string(64, 'z'), true},
      {"a" + std::string(63, '-'), true},
      {"", false},
      {std::string(65, 'z'), false},
      {"_alice", false},
      {"-alice", false},
      {".alice", false},
      {"al ice", false},
      {"alice@example.com", false},
      {"alice/bob", false},
      {"alice\n", false},
      {std::string("al\0ce", 5), false},
      {"\xc3\xa9lodie", false},
      {"caf\xc3\xa9", false},
  };
  for (const row& r : rows) EXPECT_EQ(jwt::valid_user_id(r.user), r.valid) << '"' << r.user << '"';
}

}  // namespace
