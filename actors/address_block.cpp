// The block of client addresses that per-address rate limits count together.
#include "actors/address_block.hpp"

#include <array>
#include <cctype>
#include <vector>

namespace chorus::actors {

namespace {

/// Appends the 16-bit groups of one side of "::"; false if a group is not 1-4 hex digits. An IPv4 tail
/// ("::ffff:1.2.3.4") counts as two groups; only the first four groups matter here, so its value does not.
bool groups_of(std::string_view part, std::vector<std::string_view>& out) {
  if (part.empty()) return true;
  std::size_t start = 0;
  for (;;) {
    const auto colon = part.find(':', start);
    const auto group =
        part.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
    if (group.find('.') != std::string_view::npos && colon == std::string_view::npos) {
      out.push_back("0");
      out.push_back("0");
      return true;
    }
    if (group.empty() || group.size() > 4) return false;
    for (char c : group)
      if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    out.push_back(group);
    if (colon == std::string_view::npos) return true;
    start = colon + 1;
  }
}

}  // namespace

std::string address_block(std::string_view ip) {
  if (ip.find(':') == std::string_view::npos) return std::string(ip);
  auto text = ip.substr(0, ip.find('%'));  // a zone ("fe80::1%eth0") is not part of the address
  std::vector<std::string_view> head, tail;
  const auto gap = text.find("::");
  bool ok = gap == std::string_view::npos
                ? groups_of(text, head) && head.size() == 8
                : text.find("::", gap + 1) == std::string_view::npos &&
                      groups_of(text.substr(0, gap), head) && groups_of(text.substr(gap + 2), tail) &&
                      head.size() + tail.size() < 8;
  if (!ok) return std::string(ip);
  std::array<std::string_view, 8> all{};
  all.fill("0");
  for (std::size_t i = 0; i < head.size(); ++i) all[i] = head[i];
  for (std::size_t i = 0; i < tail.size(); ++i) all[8 - tail.size() + i] = tail[i];
  std::string out;
  for (std::size_t i = 0; i < 4; ++i) {
    auto g = all[i];
    while (g.size() > 1 && g.front() == '0') g.remove_prefix(1);  // one spelling per network
    for (char c : g) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += ':';
  }
  return out + ":/64";
}

}  // namespace chorus::actors
