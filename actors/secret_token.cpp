// Secret tokens from libsodium's CSPRNG, and their SHA-256 digests.
#include "actors/secret_token.hpp"

#include <sodium.h>

#include <stdexcept>

namespace chorus::actors {
namespace {

/// As in password.cpp: sodium_init() once; repeated calls are harmless.
bool sodium_ready() noexcept {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

static_assert(secret_token_chars + 1 ==
              sodium_base64_ENCODED_LEN(secret_token_bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING));

}  // namespace

std::string new_secret_token() {
  if (!sodium_ready()) throw std::runtime_error("new_secret_token: libsodium failed to initialise");
  unsigned char raw[secret_token_bytes];
  randombytes_buf(raw, sizeof raw);
  char text[secret_token_chars + 1];
  sodium_bin2base64(text, sizeof text, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof raw);
  std::string token(text, secret_token_chars);
  sodium_memzero(text, sizeof text);
  return token;
}

std::string token_digest(std::string_view token) {
  // libsodium asks for sodium_init() before any call; SHA-256 works even if it failed (no randomness).
  (void)sodium_ready();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(token.data()), token.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex, crypto_hash_sha256_BYTES * 2);
}

}  // namespace chorus::actors
