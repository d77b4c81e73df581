// Password hashing for accounts: Argon2id through libsodium, and the rule a new password must meet.
#pragma once

#include <string>
#include <string_view>

namespace chorus::actors {

/// Hashes `password` with Argon2id (libsodium `crypto_pwhash_str_alg`, OPSLIMIT/MEMLIMIT_INTERACTIVE: 2
/// passes over 64 MiB) and a fresh random salt. The result is the self-describing string
/// `$argon2id$v=19$m=65536,t=2,p=1$<salt>$<hash>`, safe to store as it is.
/// Takes tens of milliseconds and 64 MiB: call it off the network threads.
/// Throws std::runtime_error when libsodium cannot start or the memory cannot be had; the message never
/// contains the password. Thread-safe; logs nothing.
std::string hash_password(std::string_view password);

/// True when `password` matches `hash` (a string from hash_password, or any Argon2i/Argon2id string
/// libsodium understands). The comparison is constant-time inside libsodium. A malformed hash is simply
/// false. Costs as much as hash_password, which is what makes probing unknown accounts take as long as
/// probing real ones. Thread-safe; never throws; logs nothing.
bool verify_password(std::string_view hash, std::string_view password) noexcept;

/// True when `hash` was made with weaker (or different) parameters than hash_password uses today, so it
/// should be replaced after the next successful login.
bool password_needs_rehash(std::string_view hash) noexcept;

/// The rule for a new password: 8 to 128 bytes (bytes, not characters, as docs/openapi.yaml says) of valid
/// UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). Nothing else is required or forbidden:
/// spaces, symbols and any script are welcome, following NIST SP 800-63B (length over composition rules).
/// The upper bound keeps the input to the hash small; the lower bound is the NIST minimum.
bool password_acceptable(std::string_view password) noexcept;

inline constexpr std::size_t password_min_bytes = 8;
inline constexpr std::size_t password_max_bytes = 128;

}  // namespace chorus::actors
