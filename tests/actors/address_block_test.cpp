// Tests for the address blocks per-address rate limits count together.
#include "actors/address_block.hpp"

#include <gtest/gtest.h>

namespace {

using chorus::actors::address_block;

TEST(AddressBlock, Ipv4AddressesAreTheirOwnBlock) {
  EXPECT_EQ(address_block("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(address_block("203.0.113.7"), "203.0.113.7");
}

TEST(AddressBlock, Ipv6AddressesOfOneSlash64ShareABlock) {
  const auto block = address_block("2001:db8:1:2::1");
  EXPECT_EQ(block, "2001:db8:1:2::/64");
  EXPECT_EQ(address_block("2001:db8:1:2:ffff:ffff:ffff:ffff"), block);
  EXPECT_EQ(address_block("2001:0DB8:0001:0002:0:0:0:9"), block) << "any spelling";
  EXPECT_EQ(address_block("2001:db8:1:2:a:b:1.2.3.4"), block) << "an IPv4 tail";
  EXPECT_NE(address_block("2001:db8:1:3::1"), block) << "the next /64 is another block";
}

TEST(AddressBlock, GapsAndZonesAreReadRight) {
  EXPECT_EQ(address_block("::1"), "0:0:0:0::/64");
  EXPECT_EQ(address_block("2001:db8::"), "2001:db8:0:0::/64");
  EXPECT_EQ(address_block("2001:db8::5:6:7:8"), "2001:db8:0:0::/64");
  EXPECT_EQ(address_block("fe80::1%eth0"), "fe80:0:0:0::/64");
}

TEST(AddressBlock, TextThatIsNoAddressIsKeptAsItIs) {
  for (const char* odd : {"", "not-an-address", "1::2::3", "12345::1", "1:2:3:4:5:6:7:8:9", "g::1"})
    EXPECT_EQ(address_block(odd), odd) << odd;
}

}  // namespace
