// The live metrics (galay-kernel/runtime/metrics.h) as the benchmark programs print them:
// a per-second line from two snapshots (bench_server --stats, bench_file_io's progress
// lines) and a JSON object of the totals (their --json output).
#pragma once

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

#include "galay-kernel/runtime/metrics.h"

namespace galay::bench {

/// What happened between `prev` and `now`, `secs` apart, one line without a newline: ops
/// finished per second, MB/s in and out, loop turns and blocking waits per second, the mean
/// turn, and the io_uring and stall counters (totals so far).
inline std::string metrics_line(const SchedulerMetrics& now, const SchedulerMetrics& prev, double secs) {
  const SchedulerMetrics::Ops a = now.total(), b = prev.total();
  const double per_s = secs > 0 ? 1.0 / secs : 0.0;
  const std::uint64_t done = (a.completed + a.failed) - (b.completed + b.failed);
  const std::uint64_t turns = now.loop_turns - prev.loop_turns;
  const double turn_us = turns > 0 ? double(now.loop_turn_ns - prev.loop_turn_ns) / double(turns) / 1e3 : 0.0;
  char line[320];
  std::snprintf(line, sizeof line,
                "ops/s %.0f  in %.2f MB/s  out %.2f MB/s  turns/s %.0f (mean %.2f us)  sleeps/s %.0f  "
                "in-flight %" PRIu64 "  failed %" PRIu64 "  stalls %" PRIu64 "  sq-full %" PRIu64
                "  cq-overflow %" PRIu64 "  enobufs %" PRIu64,
                double(done) * per_s, double(now.bytes_in - prev.bytes_in) * per_s / 1e6,
                double(now.bytes_out - prev.bytes_out) * per_s / 1e6, double(turns) * per_s, turn_us,
                double(now.blocking_waits - prev.blocking_waits) * per_s, now.in_flight(), a.failed, now.stalls,
                now.sq_full_waits, now.cq_overflows, now.enobufs_rearms);
  return line;
}

/// The totals of `m` as one JSON object (no newline).
inline std::string metrics_json(const SchedulerMetrics& m) {
  const SchedulerMetrics::Ops t = m.total();
  char json[512];
  std::snprintf(
      json, sizeof json,
      "{\"ops_started\":%" PRIu64 ",\"ops_completed\":%" PRIu64 ",\"ops_failed\":%" PRIu64 ",\"bytes_in\":%" PRIu64
      ",\"bytes_out\":%" PRIu64 ",\"loop_turns\":%" PRIu64 ",\"loop_turn_ns\":%" PRIu64 ",\"blocking_waits\":%" PRIu64
      ",\"wakeups\":%" PRIu64 ",\"coop_yields\":%" PRIu64 ",\"stalls\":%" PRIu64 ",\"sq_full_waits\":%" PRIu64
      ",\"cq_overflows\":%" PRIu64 ",\"enobufs_rearms\":%" PRIu64 "}",
      t.started, t.completed, t.failed, m.bytes_in, m.bytes_out, m.loop_turns, m.loop_turn_ns, m.blocking_waits,
      m.wakeups, m.coop_yields, m.stalls, m.sq_full_waits, m.cq_overflows, m.enobufs_rearms);
  return json;
}

}  // namespace galay::bench
