// The block of client addresses that per-address rate limits count together.
#pragma once

#include <string>
#include <string_view>

namespace chorus::actors {

/// The key a per-address limit counts `ip` under: an IPv4 address as it is; for IPv6 its /64 network
/// ("2001:db8:1:2::/64"), since one host commonly holds a whole /64 and could otherwise take a fresh
/// address, and a fresh allowance, per request. Text that is not an IPv6 address is returned as it is.
std::string address_block(std::string_view ip);

}  // namespace chorus::actors
