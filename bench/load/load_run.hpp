// Runs one scenario against one or more nodes on a single-threaded io_context and reports what happened.
#pragma once

#include "bench/load/report.hpp"
#include "bench/load/scenario.hpp"

namespace chorus::bench {

/// Connects, joins, paces the senders (and churn) through every step, drains, closes, and returns the
/// report. Blocks the calling thread for the length of the run; all I/O runs on that thread. Progress goes
/// to stderr when it is a terminal and `s.json` is false.
run_report run_load(const scenario& s);

}  // namespace chorus::bench
