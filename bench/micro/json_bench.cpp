// Micro-benchmarks of Boost.JSON serialisation against the hand-written encoder, for the same message event.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include <boost/json.hpp>

#include "actors/protocol.hpp"

namespace chorus::protocol {
namespace {

namespace json = boost::json;

chat_message sample_message(std::size_t text_chars) {
  std::string text;
  while (text.size() < text_chars) text += "hey, lunch at noon? ";
  text.resize(text_chars);
  return chat_message{
      "0190d5c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f", "general", 42, "alice", text, 1763780645123, "c-1712345678-42"};
}

/// The message event as a DOM, the way the encoder would be written with Boost.JSON.
json::value to_dom(const chat_message& msg, json::storage_ptr sp = {}) {
  json::object d(sp);
  d["id"] = msg.id;
  d["user"] = msg.user;
  d["text"] = msg.text;
  d["ts"] = format_timestamp(msg.ts_ms);
  if (!msg.client_msg_id.empty()) d["client_msg_id"] = msg.client_msg_id;
  json::object ev(sp);
  ev["ev"] = "message";
  ev["room"] = msg.room;
  ev["seq"] = msg.seq;
  ev["d"] = std::move(d);
  return ev;
}

/// Both sides must produce the same JSON, or the comparison means nothing.
bool same_output(const chat_message& msg) {
  return json::parse(encode_message_event(msg)) == json::parse(json::serialize(to_dom(msg)));
}

void finish(benchmark::State& state, std::size_t bytes) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

void bm_hand_encoder(benchmark::State& state) {
  const auto msg = sample_message(static_cast<std::size_t>(state.range(0)));
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::string out = encode_message_event(msg);
    bytes = out.size();
    benchmark::DoNotOptimize(out);
  }
  finish(state, bytes);
}

/// What replacing the encoder with Boost.JSON would cost on every broadcast: build the DOM, then serialise.
void bm_boost_json_build_and_serialize(benchmark::State& state) {
  const auto msg = sample_message(static_cast<std::size_t>(state.range(0)));
  if (!same_output(msg)) {
    state.SkipWithError("Boost.JSON and the encoder disagree");
    return;
  }
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::string out = json::serialize(to_dom(msg));
    bytes = out.size();
    benchmark::DoNotOptimize(out);
  }
  finish(state, bytes);
}

/// The same with the DOM in a stack arena, the best case for Boost.JSON short of writing strings directly.
void bm_boost_json_arena_build_and_serialize(benchmark::State& state) {
  const auto msg = sample_message(static_cast<std::size_t>(state.range(0)));
  std::size_t bytes = 0;
  for (auto _ : state) {
    alignas(std::max_align_t) unsigned char buffer[8192];
    json::monotonic_resource arena(buffer, sizeof buffer);
    std::string out = json::serialize(to_dom(msg, &arena));
    bytes = out.size();
    benchmark::DoNotOptimize(out);
  }
  finish(state, bytes);
}

/// Serialising a DOM that already exists: the floor for Boost.JSON, reached only if the DOM were free.
void bm_boost_json_serialize_only(benchmark::State& state) {
  const auto msg = sample_message(static_cast<std::size_t>(state.range(0)));
  const json::value dom = to_dom(msg);
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::string out = json::serialize(dom);
    bytes = out.size();
    benchmark::DoNotOptimize(out);
  }
  finish(state, bytes);
}

// Text lengths: a typical chat line and the 4000-character maximum.
BENCHMARK(bm_hand_encoder)->ArgName("text")->Arg(20)->Arg(4000);
BENCHMARK(bm_boost_json_build_and_serialize)->ArgName("text")->Arg(20)->Arg(4000);
BENCHMARK(bm_boost_json_arena_build_and_serialize)->ArgName("text")->Arg(20)->Arg(4000);
BENCHMARK(bm_boost_json_serialize_only)->ArgName("text")->Arg(20)->Arg(4000);

}  // namespace
}  // namespace chorus::protocol
