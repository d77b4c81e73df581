// Micro-benchmarks of the wire codec: what one request decode and one server-frame encode cost.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "actors/protocol.hpp"

namespace chorus::protocol {
namespace {

/// `chars` code points of chat-like text built from `word`, so the decoder's length and blank checks
/// walk real content rather than one repeated byte.
std::string chat_text(std::string_view word, std::size_t chars) {
  std::string out;
  std::size_t n = 0;
  for (std::size_t i = 0;; i = (i + 1) % word.size()) {
    const bool starts_code_point = (static_cast<unsigned char>(word[i]) & 0xC0) != 0x80;
    // The limit is in code points, so stop at a code point boundary, never inside one.
    if (starts_code_point && n++ == chars) break;
    out.push_back(word[i]);
  }
  return out;
}

std::string send_frame(std::string_view text) {
  return R"({"op":"send","id":42,"room":"general","text":")" + std::string(text) +
         R"(","client_msg_id":"c-1712345678-42"})";
}

void bm_decode(benchmark::State& state, std::string frame) {
  const decode_limits limits;
  // A frame that fails to decode would measure the error path, not the one we mean to.
  if (!std::holds_alternative<request>(decode_request(frame, limits))) {
    state.SkipWithError("frame does not decode");
    return;
  }
  for (auto _ : state) {
    auto result = decode_request(frame, limits);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
  state.counters["frame_bytes"] = static_cast<double>(frame.size());
}

BENCHMARK_CAPTURE(bm_decode, ping, std::string(R"({"op":"ping","id":9})"));
BENCHMARK_CAPTURE(bm_decode, join, std::string(R"({"op":"join","id":2,"room":"general"})"));
BENCHMARK_CAPTURE(bm_decode, send, send_frame("hey, anyone up for lunch at noon?"));
// Over the decoder's 2 KiB stack arena, so this one also pays for heap allocation in the parser.
BENCHMARK_CAPTURE(bm_decode, send_4000_ascii, send_frame(chat_text("the quick brown fox jumps over ", 4000)));
// Two bytes per code point: the frame is twice the bytes, and Boost.JSON validates multi-byte UTF-8 on a
// much slower path than ASCII.
BENCHMARK_CAPTURE(bm_decode, send_4000_cyrillic, send_frame(chat_text("съешь же ещё этих булок ", 4000)));

chat_message sample_message(std::string text) {
  return chat_message{"0190d5c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f",
                      "general",
                      42,
                      "alice",
                      std::move(text),
                      1763780645123,
                      "c-1712345678-42"};
}

template <typename Encode>
void run_encoder(benchmark::State& state, Encode encode) {
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::string out = encode();
    bytes = out.size();
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
  state.counters["frame_bytes"] = static_cast<double>(bytes);
}

void bm_encode_message_event(benchmark::State& state, std::string text) {
  const chat_message msg = sample_message(std::move(text));
  run_encoder(state, [&] { return encode_message_event(msg); });
}

BENCHMARK_CAPTURE(bm_encode_message_event, short, std::string("hey, anyone up for lunch at noon?"));
BENCHMARK_CAPTURE(bm_encode_message_event, 4000_ascii, chat_text("the quick brown fox jumps over ", 4000));
BENCHMARK_CAPTURE(bm_encode_message_event, 4000_cyrillic, chat_text("съешь же ещё этих булок ", 4000));
// Every line break becomes \u000a and every quote \": the slow path of append_string.
BENCHMARK_CAPTURE(bm_encode_message_event, 4000_escapes, chat_text("say \"hi\"\n", 4000));

void bm_encode_send_ok(benchmark::State& state) {
  const chat_message msg = sample_message("hey, anyone up for lunch at noon?");
  run_encoder(state, [&] { return encode_send_ok(7, msg); });
}
BENCHMARK(bm_encode_send_ok);

void bm_encode_hello(benchmark::State& state) {
  const hello_event hello{"node-a", 30000, limits_info{65536, 4000, 20, 40, 256, 100}};
  run_encoder(state, [&] { return encode_hello(hello); });
}
BENCHMARK(bm_encode_hello);

}  // namespace
}  // namespace chorus::protocol
