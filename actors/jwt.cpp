// HS256 JWT minting and verification: strict base64url, OpenSSL HMAC, constant-time signature check.
#include "actors/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>

namespace chorus::actors::jwt {
namespace {

// Access tokens are small; the cap bounds the work an unauthenticated client can make us do.
constexpr std::size_t max_token_size = 8 * 1024;
constexpr std::size_t mac_size = 32;

using mac = std::array<unsigned char, mac_size>;

constexpr char base64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char byte : in) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(base64url_alphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(base64url_alphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

// Strict: no padding, no foreign characters, and the unused low bits of the last character must be zero,
// so every byte string has exactly one accepted encoding (otherwise a signature could be re-spelled).
std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int value = sextet(c);
    if (value < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::optional<mac> hmac_sha256(std::string_view key, std::string_view data) {
  if (key.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return std::nullopt;
  // OpenSSL reads a null key as "no key given" and fails; an empty secret must still be an (empty) key.
  static const unsigned char empty_key = 0;
  const void* key_ptr = key.empty() ? static_cast<const void*>(&empty_key) : key.data();
  mac out{};
  unsigned int out_len = 0;
  if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(),
           &out_len) == nullptr ||
      out_len != mac_size) {
    return std::nullopt;
  }
  return out;
}

std::optional<boost::json::object> parse_object(std::string_view text) {
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
  if (ec || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

// exp is a NumericDate; some issuers serialise it as a float, which we accept only when it is integral.
std::optional<std::int64_t> integral_seconds(const boost::json::value& value) {
  if (value.is_int64()) return value.get_int64();
  if (value.is_double()) {
    const double d = value.get_double();
    // 2^63 is exactly representable; anything at or beyond it would overflow the conversion.
    constexpr double limit = 9223372036854775808.0;
    if (std::isfinite(d) && d == std::trunc(d) && d >= -limit && d < limit)
      return static_cast<std::int64_t>(d);
  }
  // uint64 only holds values above INT64_MAX, which an int64 expiry cannot represent.
  return std::nullopt;
}

}  // namespace

std::string_view describe(failure f) {
  switch (f) {
    case failure::malformed:
      return "token is not a well-formed JWT";
    case failure::wrong_algorithm:
      return "token algorithm is not HS256";
    case failure::bad_signature:
      return "token signature does not match";
    case failure::expired:
      return "token has expired";
    case failure::missing_subject:
      return "token has no valid subject";
    case failure::missing_expiry:
      return "token has no expiry";
  }
  return "token rejected";
}

std::string mint(std::string_view secret, std::string_view subject, std::int64_t now_seconds,
                 std::int64_t ttl_seconds) {
  std::int64_t expires_at = 0;
  if (__builtin_add_overflow(now_seconds, ttl_seconds, &expires_at)) {
    expires_at =
        ttl_seconds > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
  }
  boost::json::object payload;
  payload["sub"] = boost::json::string_view(subject.data(), subject.size());
  payload["iat"] = now_seconds;
  payload["exp"] = expires_at;

  std::string token = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  token += '.';
  token += base64url_encode(boost::json::serialize(payload));
  const auto signature = hmac_sha256(secret, token);
  // Only an absurd secret (over 2 GiB) or an OpenSSL failure gets here; an unsignable token must not escape.
  if (!signature) return {};
  token += '.';
  token +=
      base64url_encode(std::string_view(reinterpret_cast<const char*>(signature->data()), signature->size()));
  return token;
}

std::variant<claims, failure> verify(std::string_view token, std::string_view secret,
                                     std::int64_t now_seconds) {
  if (token.size() > max_token_size) return failure::malformed;

  const std::size_t first_dot = token.find('.');
  if (first_dot == std::string_view::npos) return failure::malformed;
  const std::size_t second_dot = token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos || token.find('.', second_dot + 1) != std::string_view::npos) {
    return failure::malformed;
  }
  const std::string_view header_part = token.substr(0, first_dot);
  const std::string_view payload_part = token.substr(first_dot + 1, second_dot - first_dot - 1);
  const std::string_view signature_part = token.substr(second_dot + 1);

  const auto header_text = base64url_decode(header_part);
  const auto payload_text = base64url_decode(payload_part);
  const auto signature = base64url_decode(signature_part);
  if (!header_text || !payload_text || !signature) return failure::malformed;
  const auto header = parse_object(*header_text);
  const auto payload = parse_object(*payload_text);
  if (!header || !payload) return failure::malformed;

  // The algorithm is pinned, never chosen by the token, which is what defeats "alg":"none" forgeries.
  const boost::json::value* alg = header->if_contains("alg");
  if (alg == nullptr || !alg->is_string() || alg->get_string() != "HS256") return failure::wrong_algorithm;

  const auto expected = hmac_sha256(secret, token.substr(0, second_dot));
  if (!expected || signature->size() != expected->size() ||
      CRYPTO_memcmp(signature->data(), expected->data(), expected->size()) != 0) {
    return failure::bad_signature;
  }

  // Only now, with the signature verified, are the claims worth reading.
  const boost::json::value* sub = payload->if_contains("sub");
  if (sub == nullptr || !sub->is_string()) return failure::missing_subject;
  const std::string_view subject(sub->get_string().data(), sub->get_string().size());
  if (!valid_user_id(subject)) return failure::missing_subject;

  const boost::json::value* exp = payload->if_contains("exp");
  if (exp == nullptr) return failure::missing_expiry;
  const auto expires_at = integral_seconds(*exp);
  if (!expires_at) return failure::missing_expiry;
  if (*expires_at <= now_seconds) return failure::expired;

  return claims{std::string(subject), *expires_at};
}

bool valid_user_id(std::string_view user) {
  if (user.empty() || user.size() > 64) return false;
  // ASCII ranges on purpose: std::isalnum depends on the locale and would admit other letters.
  const auto alnum = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!alnum(user.front())) return false;
  for (char c : user) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace chorus::actors::jwt
