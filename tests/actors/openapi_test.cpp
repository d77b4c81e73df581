// docs/openapi.yaml against the routes api_routes serves: a route the document does not describe fails, and
// so does a documented operation that no route serves. Error code enums must name real protocol codes.
#include "actors/api_routes.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/protocol.hpp"

#ifndef CHORUS_OPENAPI_PATH
#error "CHORUS_OPENAPI_PATH must name docs/openapi.yaml (tests/CMakeLists.txt sets it)"
#endif

namespace {

using operation = std::pair<std::string, std::string>;  // (upper-case method, path)

/// Indentation and key of a line `  key: ...` (key unquoted); empty key for blank, comment and list lines.
struct yaml_line {
  std::size_t indent = 0;
  std::string key;
  std::string value;  ///< what follows "key:", trimmed
};

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::string unquote(std::string s) {
  if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front())
    return s.substr(1, s.size() - 2);
  return s;
}

yaml_line parse_line(std::string_view line) {
  yaml_line out;
  out.indent = line.find_first_not_of(' ');
  if (out.indent == std::string_view::npos) return {};  // blank
  auto rest = line.substr(out.indent);
  if (rest.starts_with('#') || rest.starts_with('-')) return out;
  // The key ends at the first ": " or a trailing ':' outside quotes; paths hold no ':' of their own.
  std::size_t colon = std::string_view::npos;
  char quote = 0;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    char c = rest[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == ':' && (i + 1 == rest.size() || rest[i + 1] == ' ')) {
      colon = i;
      break;
    }
  }
  if (colon == std::string_view::npos) return out;
  out.key = unquote(trim(rest.substr(0, colon)));
  out.value = trim(rest.substr(colon + 1));
  return out;
}

std::vector<std::string> read_lines(const std::string& file) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

/// Every (method, path) under `paths:`: paths are the keys indented 2 spaces, methods the keys
/// get/post/patch/put/delete indented 4 spaces under a path. Other keys (parameters, summary) are skipped.
std::vector<operation> documented_operations(const std::vector<std::string>& lines) {
  static const std::set<std::string, std::less<>> methods{"get", "post", "patch", "put", "delete"};
  std::vector<operation> out;
  bool in_paths = false;
  std::string path;
  for (const auto& text : lines) {
    auto line = parse_line(text);
    if (line.key.empty()) continue;
    if (line.indent == 0) {
      in_paths = line.key == "paths";
      path.clear();
      continue;
    }
    if (!in_paths) continue;
    if (line.indent == 2) {
      path = line.key;
    } else if (line.indent == 4 && !path.empty() && methods.contains(line.key)) {
      std::string method = line.key;
      for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      out.emplace_back(std::move(method), path);
    }
  }
  return out;
}

/// The values of every `enum` under a key `code:`: flow style (`enum: [a, b]`) or block style (`- a` lines).
std::vector<std::string> documented_error_codes(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto code = parse_line(lines[i]);
    if (code.key != "code" || !code.value.empty()) continue;
    // The body of `code:` is every following line indented deeper than it.
    for (std::size_t j = i + 1; j < lines.size(); ++j) {
      auto line = parse_line(lines[j]);
      auto indent = lines[j].find_first_not_of(' ');
      if (indent == std::string::npos) continue;
      if (indent <= code.indent) break;
      if (line.key != "enum") continue;
      if (line.value.starts_with('[')) {
        std::stringstream items(line.value.substr(1, line.value.find(']') - 1));
        for (std::string item; std::getline(items, item, ',');) out.push_back(unquote(trim(item)));
      } else {
        for (std::size_t k = j + 1; k < lines.size(); ++k) {
          auto item = trim(lines[k]);
          if (!item.starts_with("- ")) break;
          out.push_back(unquote(trim(item.substr(2))));
        }
      }
    }
  }
  return out;
}

std::string describe(const operation& op) {
  return op.first + " " + op.second;
}

class OpenApi : public ::testing::Test {
 protected:
  void SetUp() override {
    lines_ = read_lines(CHORUS_OPENAPI_PATH);
    ASSERT_FALSE(lines_.empty()) << "cannot read " << CHORUS_OPENAPI_PATH;
    for (const auto& op : documented_operations(lines_)) {
      EXPECT_TRUE(documented_.insert(op).second) << describe(op) << " is documented twice";
    }
    ASSERT_FALSE(documented_.empty()) << "no operations found under `paths:` in " << CHORUS_OPENAPI_PATH;
    for (const auto& r : chorus::actors::api_routes::routes())
      served_.emplace(std::string(r.method), std::string(r.pattern));
  }

  std::vector<std::string> lines_;
  std::set<operation> documented_;
  std::set<operation> served_;
};

TEST_F(OpenApi, EveryRouteIsDocumented) {
  ASSERT_FALSE(served_.empty());
  for (const auto& op : served_)
    EXPECT_TRUE(documented_.contains(op))
        << describe(op) << " is served but docs/openapi.yaml does not describe it";
}

TEST_F(OpenApi, EveryDocumentedOperationIsServed) {
  for (const auto& op : documented_)
    EXPECT_TRUE(served_.contains(op)) << describe(op) << " is in docs/openapi.yaml but no route serves it";
}

TEST_F(OpenApi, ErrorCodesAreProtocolCodes) {
  using chorus::protocol::error_code;
  std::set<std::string, std::less<>> known;
  for (int i = 0; i <= static_cast<int>(error_code::internal); ++i)
    known.emplace(chorus::protocol::to_string(static_cast<error_code>(i)));
  auto codes = documented_error_codes(lines_);
  ASSERT_FALSE(codes.empty()) << "no `code:` enums found in " << CHORUS_OPENAPI_PATH;
  for (const auto& code : codes)
    EXPECT_TRUE(known.contains(code))
        << "docs/openapi.yaml lists error code '" << code << "', which protocol::to_string never returns";
}

// The reader itself, on a document whose shape mirrors openapi.yaml.
TEST(OpenApiReader, FindsOperationsAndErrorCodes) {
  std::vector<std::string> doc{
      "openapi: 3.1.0",
      "paths:",
      "  /a/{id}:",
      "    parameters: []",
      "    get:",
      "      summary: 'x: y'",
      "      responses:",
      "        '404':",
      "          content:",
      "            post: not a method at this depth",
      "    patch:",
      "      summary: z",
      "  '/b':",
      "    delete:",
      "components:",
      "  schemas:",
      "    E:",
      "      properties:",
      "        code:",
      "          type: string",
      "          enum: [not_found, 'conflict']",
      "        other:",
      "          enum: [ignored]",
      "    F:",
      "      properties:",
      "        code:",
      "          enum:",
      "            - rate_limited",
      "            - \"internal\"",
      "    get:",
  };
  auto ops = documented_operations(doc);
  EXPECT_EQ(ops, (std::vector<operation>{{"GET", "/a/{id}"}, {"PATCH", "/a/{id}"}, {"DELETE", "/b"}}));
  EXPECT_EQ(documented_error_codes(doc),
            (std::vector<std::string>{"not_found", "conflict", "rate_limited", "internal"}));
}

}  // namespace
