// Opaque secret tokens (refresh tokens): random, unguessable, and stored only as a digest.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace chorus::actors {

/// Random bytes in a token: 256 bits, so guessing one is hopeless and collisions never happen in practice.
inline constexpr std::size_t secret_token_bytes = 32;
/// Length of a token as text: base64url of 32 bytes, without padding.
inline constexpr std::size_t secret_token_chars = 43;

/// A new token: 32 bytes from libsodium's `randombytes_buf` (the OS CSPRNG), base64url-encoded
/// (`A-Z a-z 0-9 - _`) without padding, 43 characters. Throws std::runtime_error only if libsodium
/// cannot start. Thread-safe.
std::string new_secret_token();

/// SHA-256 of `token` as 64 lower-case hex digits: what the database stores and looks tokens up by, so a
/// leaked table holds no usable token. A plain (unsalted, fast) hash is enough because the token itself
/// carries 256 random bits; there is nothing to brute-force. Thread-safe; never throws.
std::string token_digest(std::string_view token);

}  // namespace chorus::actors
