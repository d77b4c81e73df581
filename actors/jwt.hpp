// HS256 JSON Web Tokens: minting development tokens and verifying access tokens.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace chorus::actors::jwt {

/// Why a token was refused. `expired` is kept apart so clients can tell "log in again" from "forged".
enum class failure {
  malformed,        ///< not three base64url parts of JSON objects
  wrong_algorithm,  ///< header alg is not HS256 (alg "none" included)
  bad_signature,    ///< HMAC does not match
  expired,          ///< exp is in the past (no leeway)
  missing_subject,  ///< no string `sub`, or one that is not a valid user id
  missing_expiry,   ///< no numeric `exp`: Chorus does not accept tokens that never expire
};

std::string_view describe(failure f);

/// What a valid token says.
struct claims {
  std::string subject;      ///< the user id
  std::int64_t expires_at;  ///< seconds since the epoch
};

/// Mints a token for `subject` valid for `ttl_seconds` from `now_seconds`.
std::string mint(std::string_view secret, std::string_view subject, std::int64_t now_seconds,
                 std::int64_t ttl_seconds);

/// Verifies signature (constant-time), algorithm, expiry and subject. `now_seconds` is injected for tests.
std::variant<claims, failure> verify(std::string_view token, std::string_view secret,
                                     std::int64_t now_seconds);

/// A user id: 1 to 64 characters of [A-Za-z0-9_.-], starting with a letter or digit.
bool valid_user_id(std::string_view user);

}  // namespace chorus::actors::jwt
