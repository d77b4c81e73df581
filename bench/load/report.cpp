// Renders a run's results: a summary for people and one JSON line for scripts (bench/run.sh, the smoke test).
#include "bench/load/report.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>
#include <cmath>

namespace chorus::bench {
namespace {

namespace json = boost::json;

double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// Three significant decimals are plenty for a report and keep the JSON line readable.
double round3(double v) {
  return std::isfinite(v) ? std::round(v * 1000.0) / 1000.0 : 0.0;
}

/// Boost.JSON prints every double in exponent form ("1.5E2"); the report is read by people and plotting
/// scripts too, so numbers are written plainly here and only strings are left to Boost.JSON's escaping.
void write_plain(std::string& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, val] : v.get_object()) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(json::string(k));
        out += ':';
        write_plain(out, val);
      }
      out += '}';
      break;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& val : v.get_array()) {
        if (!first) out += ',';
        first = false;
        write_plain(out, val);
      }
      out += ']';
      break;
    }
    case json::kind::double_: {
      const double d = v.get_double();
      if (!std::isfinite(d)) {
        out += "null";
        break;
      }
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6f", d);
      std::string text(buf);
      while (text.back() == '0') text.pop_back();
      if (text.back() == '.') text.pop_back();
      out += text == "-0" ? "0" : text;
      break;
    }
    default:
      out += json::serialize(v);
  }
}

json::object to_json(const latency_summary& l) {
  return {{"count", l.count},           {"p50_ms", round3(l.p50_ms)},   {"p90_ms", round3(l.p90_ms)},
          {"p99_ms", round3(l.p99_ms)}, {"p999_ms", round3(l.p999_ms)}, {"max_ms", round3(l.max_ms)}};
}

template <class Map>
json::object counts_to_json(const Map& m) {
  json::object o;
  for (const auto& [k, v] : m) {
    if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
      o[k] = v;
    } else {
      o[std::to_string(k)] = v;
    }
  }
  return o;
}

json::object to_json(const step_result& s) {
  json::object o{{"offered_rate", round3(s.offered_rate)},
                 {"duration_s", round3(s.duration_s)},
                 {"sent", s.sent},
                 {"acknowledged", s.acknowledged},
                 {"delivered", s.delivered},
                 {"expected", s.expected},
                 {"delivery_ratio", s.expected == 0 ? 0.0 : std::round(s.delivery_ratio * 1e6) / 1e6},
                 {"deliveries_per_s", std::round(s.deliveries_per_s)},
                 {"ack_latency", to_json(s.ack_latency)},
                 {"ack_latency_from_write", to_json(s.ack_latency_from_write)},
                 {"delivery_latency", to_json(s.delivery_latency)},
                 {"errors", counts_to_json(s.errors)},
                 {"disconnects", s.disconnects},
                 {"seq_gaps", s.seq_gaps},
                 {"seq_out_of_order", s.seq_out_of_order},
                 {"max_send_queue", s.max_send_queue},
                 {"max_pacer_lag_ms", round3(s.max_pacer_lag_ms)},
                 {"generator_cpu", round3(s.generator_cpu)},
                 {"server_cpu", s.server_cpu < 0 ? json::value(nullptr) : json::value(round3(s.server_cpu))},
                 {"held", s.held}};
  json::array by_second;
  for (const auto& l : s.ack_latency_by_second)
    by_second.push_back(json::array{round3(l.p50_ms), round3(l.p99_ms), round3(l.max_ms)});
  o["ack_p50_p99_max_by_second"] = std::move(by_second);
  if (!s.server_cpus.empty()) {
    json::array cpus;
    for (const double c : s.server_cpus) cpus.push_back(round3(c));
    o["server_cpus"] = std::move(cpus);
  }
  if (!s.delivered_by_url.empty()) {
    o["delivery_latency_same_url"] = to_json(s.delivery_latency_same_url);
    o["delivery_latency_other_url"] = to_json(s.delivery_latency_other_url);
    json::array by_url;
    for (const auto n : s.delivered_by_url) by_url.push_back(n);
    o["delivered_by_url"] = std::move(by_url);
  }
  return o;
}

void print_latency(std::FILE* out, const char* name, const latency_summary& l) {
  std::fprintf(out, "  %-18s p50 %8.2f  p90 %8.2f  p99 %8.2f  p99.9 %8.2f  max %8.2f ms  (%llu samples)\n",
               name, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms,
               static_cast<unsigned long long>(l.count));
}

void print_counts(std::FILE* out, const char* name, const std::map<std::string, std::uint64_t>& m) {
  if (m.empty()) return;
  std::fprintf(out, "  %-18s", name);
  for (const auto& [k, v] : m) std::fprintf(out, " %s=%llu", k.c_str(), static_cast<unsigned long long>(v));
  std::fprintf(out, "\n");
}

void print_step(std::FILE* out, const step_result& s) {
  std::fprintf(out, "  offered            %.0f msg/s for %.1f s\n", s.offered_rate, s.duration_s);
  std::fprintf(out, "  sent / acked       %llu / %llu\n", static_cast<unsigned long long>(s.sent),
               static_cast<unsigned long long>(s.acknowledged));
  std::fprintf(out, "  delivered          %llu of %llu expected (ratio %.6f)\n",
               static_cast<unsigned long long>(s.delivered), static_cast<unsigned long long>(s.expected),
               s.delivery_ratio);
  std::fprintf(out, "  deliveries/s       %.0f\n", s.deliveries_per_s);
  print_latency(out, "ack latency", s.ack_latency);
  print_latency(out, "ack from write", s.ack_latency_from_write);
  if (!s.ack_latency_by_second.empty()) {
    std::fprintf(out, "  ack p99 by second ");
    for (const auto& l : s.ack_latency_by_second) std::fprintf(out, " %.1f", l.p99_ms);
    std::fprintf(out, " ms\n");
  }
  print_latency(out, "delivery latency", s.delivery_latency);
  if (!s.delivered_by_url.empty()) {
    print_latency(out, "same URL as sender", s.delivery_latency_same_url);
    print_latency(out, "other URL", s.delivery_latency_other_url);
    std::fprintf(out, "  %-18s", "delivered by URL");
    for (const auto n : s.delivered_by_url) std::fprintf(out, " %llu", static_cast<unsigned long long>(n));
    std::fprintf(out, "\n");
  }
  print_counts(out, "errors", s.errors);
  std::fprintf(out, "  disconnects        %llu   seq gaps %llu   out of order %llu   max send queue %llu\n",
               static_cast<unsigned long long>(s.disconnects), static_cast<unsigned long long>(s.seq_gaps),
               static_cast<unsigned long long>(s.seq_out_of_order),
               static_cast<unsigned long long>(s.max_send_queue));
  std::fprintf(out, "  generator CPU      %.0f %% of one core, worst stall %.1f ms", s.generator_cpu * 100.0,
               s.max_pacer_lag_ms);
  if (s.server_cpu >= 0) std::fprintf(out, "; server CPU %.0f %% of one core", s.server_cpu * 100.0);
  if (!s.server_cpus.empty()) {
    std::fprintf(out, " (");
    for (std::size_t i = 0; i < s.server_cpus.size(); ++i)
      std::fprintf(out, "%s%.0f %%", i == 0 ? "" : " + ", s.server_cpus[i] * 100.0);
    std::fprintf(out, ")");
  }
  std::fprintf(out, "\n");
}

}  // namespace

latency_summary summarize(const histogram& h) {
  latency_summary l;
  l.count = h.count();
  l.p50_ms = ms(h.percentile(0.50));
  l.p90_ms = ms(h.percentile(0.90));
  l.p99_ms = ms(h.percentile(0.99));
  l.p999_ms = ms(h.percentile(0.999));
  l.max_ms = ms(h.max());
  return l;
}

const step_result* headline(const run_report& r) {
  if (r.steps.empty()) return nullptr;
  if (r.settings.ramp) return r.highest_held ? &r.steps[*r.highest_held] : nullptr;
  return &r.steps.back();
}

void print_summary(std::FILE* out, const run_report& r) {
  const auto& s = r.settings;
  std::fprintf(out, "\nchorus-bench: scenario %s against", s.name.c_str());
  for (const auto& u : s.urls) std::fprintf(out, " %s", u.text.c_str());
  std::fprintf(out,
               "\n  setup              %u connections, %u rooms x %u members, %u senders, %u-byte messages",
               r.connect.requested, s.rooms, s.members_per_room, s.senders, s.message_bytes);
  if (s.write_tick_ms > 0) std::fprintf(out, ", each connection writing every %u ms", s.write_tick_ms);
  std::fputc('\n', out);
  std::fprintf(out, "  connections        %u open, %u failed in %.2f s (%.0f/s); joined %u in %.2f s\n",
               r.connect.open, r.connect.failed, r.connect.connect_time_s, r.connect.connect_rate,
               r.connect.joined, r.connect.join_time_s);
  print_latency(out, "connect+upgrade", r.connect.latency);
  print_counts(out, "setup errors", r.setup_errors);
  if (r.memory.available) {
    std::fprintf(out, "  server RSS         %llu KiB before, %llu KiB after: %.2f KiB per connection\n",
                 static_cast<unsigned long long>(r.memory.rss_before_kib),
                 static_cast<unsigned long long>(r.memory.rss_after_kib), r.memory.rss_per_connection_kib);
  }
  if (r.churn) {
    const auto& c = *r.churn;
    std::fprintf(
        out, "  churn              offered %.0f/s: %llu attempted, %llu completed (%.0f/s), %llu failed\n",
        c.offered_rate, static_cast<unsigned long long>(c.attempted),
        static_cast<unsigned long long>(c.completed), c.completed_per_s,
        static_cast<unsigned long long>(c.failed));
    print_latency(out, "churn connect+join", c.latency);
  }
  for (std::size_t i = 0; i < r.steps.size(); ++i) {
    if (s.ramp) {
      std::fprintf(out, "step %zu%s\n", i + 1, r.steps[i].held ? " (held)" : " (failed)");
    } else {
      std::fprintf(out, "result\n");
    }
    print_step(out, r.steps[i]);
  }
  if (s.ramp) {
    if (const auto* best = headline(r)) {
      std::fprintf(out, "highest step that held: %.0f msg/s offered, %.0f deliveries/s, p99 %.2f ms\n",
                   best->offered_rate, best->deliveries_per_s, best->delivery_latency.p99_ms);
    } else {
      std::fprintf(out, "no step held\n");
    }
  }
  std::fprintf(out, "  disconnects        %llu in total", static_cast<unsigned long long>(r.disconnects));
  for (const auto& [code, n] : r.close_codes)
    std::fprintf(out, "  [%u]=%llu", code, static_cast<unsigned long long>(n));
  std::fprintf(out, "\n  generator CPU      %.0f %% of one core over the run; open-files limit %llu\n",
               r.generator_cpu * 100.0, static_cast<unsigned long long>(r.open_files_limit));
  if (!r.aborted.empty()) std::fprintf(out, "  ABORTED: %s\n", r.aborted.c_str());
}

std::string json_line(const run_report& r) {
  const auto& s = r.settings;
  json::array urls;
  for (const auto& u : s.urls) urls.emplace_back(u.text);
  json::object o{
      {"scenario", s.name},
      {"urls", std::move(urls)},
      {"connections", r.connect.requested},
      {"rooms", s.rooms},
      {"members_per_room", s.members_per_room},
      {"senders", s.senders},
      {"rate", round3(s.rate)},
      {"duration_s", round3(s.duration_s)},
      {"warmup_s", round3(s.warmup_s)},
      {"message_bytes", s.message_bytes},
      {"write_tick_ms", s.write_tick_ms},
      {"ramp", s.ramp},
      {"open_files_limit", r.open_files_limit},
      {"connect",
       {{"open", r.connect.open},
        {"failed", r.connect.failed},
        {"joined", r.connect.joined},
        {"connect_time_s", round3(r.connect.connect_time_s)},
        {"connect_rate", std::round(r.connect.connect_rate)},
        {"join_time_s", round3(r.connect.join_time_s)},
        {"latency", to_json(r.connect.latency)}}},
      {"setup_errors", counts_to_json(r.setup_errors)},
      {"disconnects", r.disconnects},
      {"close_codes", counts_to_json(r.close_codes)},
      {"generator_cpu", round3(r.generator_cpu)},
  };
  if (const auto* h = headline(r)) {
    o["result"] = to_json(*h);
  } else {
    o["result"] = nullptr;
  }
  if (s.ramp) {
    json::array steps;
    for (const auto& st : r.steps) steps.push_back(to_json(st));
    o["steps"] = std::move(steps);
    o["p99_bound_ms"] = s.p99_bound_ms;
    o["min_delivery_ratio"] = s.min_delivery_ratio;
  }
  if (r.memory.available) {
    json::array samples;
    for (const auto& [n, kib] : r.memory.samples) samples.push_back(json::array{n, kib});
    o["server_memory"] = {{"rss_before_kib", r.memory.rss_before_kib},
                          {"rss_after_kib", r.memory.rss_after_kib},
                          {"rss_per_connection_kib", round3(r.memory.rss_per_connection_kib)},
                          {"samples", std::move(samples)}};
  }
  if (r.churn) {
    const auto& c = *r.churn;
    o["churn"] = {{"offered_rate", round3(c.offered_rate)},
                  {"attempted", c.attempted},
                  {"completed", c.completed},
                  {"failed", c.failed},
                  {"completed_per_s", std::round(c.completed_per_s)},
                  {"latency", to_json(c.latency)}};
  }
  if (!r.aborted.empty()) o["aborted"] = r.aborted;
  std::string out;
  write_plain(out, o);
  return out;
}

}  // namespace chorus::bench
