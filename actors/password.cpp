// Argon2id password hashing via libsodium, and the password policy.
#include "actors/password.hpp"

#include <sodium.h>

#include <stdexcept>

namespace chorus::actors {
namespace {

/// sodium_init() once per process (a function-local static is initialised exactly once, thread-safely);
/// libsodium itself allows repeated calls, so secret_token.cpp doing the same is harmless.
bool sodium_ready() noexcept {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

constexpr auto kOps = crypto_pwhash_OPSLIMIT_INTERACTIVE;
constexpr auto kMem = crypto_pwhash_MEMLIMIT_INTERACTIVE;

/// libsodium wants a NUL-terminated hash; anything that cannot be one (too long, an embedded NUL) is not a
/// hash.
bool as_c_string(std::string_view hash, char (&out)[crypto_pwhash_STRBYTES]) noexcept {
  if (hash.empty() || hash.size() >= crypto_pwhash_STRBYTES) return false;
  if (hash.find('\0') != std::string_view::npos) return false;
  hash.copy(out, hash.size());
  out[hash.size()] = '\0';
  return true;
}

}  // namespace

std::string hash_password(std::string_view password) {
  if (!sodium_ready()) throw std::runtime_error("hash_password: libsodium failed to initialise");
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), kOps, kMem,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error("hash_password: Argon2id failed (out of memory?)");
  std::string hash(out);
  sodium_memzero(out, sizeof out);
  return hash;
}

bool verify_password(std::string_view hash, std::string_view password) noexcept {
  if (!sodium_ready()) return false;
  char h[crypto_pwhash_STRBYTES];
  if (!as_c_string(hash, h)) return false;
  return crypto_pwhash_str_verify(h, password.data(), password.size()) == 0;
}

bool password_needs_rehash(std::string_view hash) noexcept {
  if (!sodium_ready()) return false;
  char h[crypto_pwhash_STRBYTES];
  if (!as_c_string(hash, h)) return true;
  // Also 1 for a hash of another algorithm (Argon2i), -1 for one libsodium cannot read.
  return crypto_pwhash_str_needs_rehash(h, kOps, kMem) != 0;
}

bool password_acceptable(std::string_view password) noexcept {
  if (password.size() < password_min_bytes || password.size() > password_max_bytes) return false;
  // Strict UTF-8 (RFC 3629): the shortest form only, no UTF-16 surrogates, nothing past U+10FFFF.
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(password[k]); };
  while (i < password.size()) {
    const unsigned char c = byte(i);
    std::size_t extra;
    char32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;  // a continuation byte first, an overlong lead (C0, C1) or past U+10FFFF (F5..FF)
    }
    if (i + extra >= password.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= extra; ++k) {
      const unsigned char cc = byte(i + k);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace chorus::actors
