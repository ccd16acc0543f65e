#include "galay-kernel/runtime/metrics.h"

#include <cinttypes>
#include <cstdio>

namespace galay {

SchedulerMetrics::Ops SchedulerMetrics::total() const noexcept {
  Ops t;
  for (const Ops& o : ops) {
    t.started += o.started;
    t.completed += o.completed;
    t.failed += o.failed;
  }
  return t;
}

SchedulerMetrics& SchedulerMetrics::operator+=(const SchedulerMetrics& o) noexcept {
  for (std::size_t i = 0; i < ops.size(); ++i) {
    ops[i].started += o.ops[i].started;
    ops[i].completed += o.ops[i].completed;
    ops[i].failed += o.ops[i].failed;
  }
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  loop_turns += o.loop_turns;
  loop_turn_ns += o.loop_turn_ns;
  for (std::size_t i = 0; i < kTurnBuckets; ++i) loop_turn_buckets[i] += o.loop_turn_buckets[i];
  blocking_waits += o.blocking_waits;
  wakeups += o.wakeups;
  coop_yields += o.coop_yields;
  ready_queue += o.ready_queue;
  timers_armed += o.timers_armed;
  stalls += o.stalls;
  sq_full_waits += o.sq_full_waits;
  cq_overflows += o.cq_overflows;
  enobufs_rearms += o.enobufs_rearms;
  return *this;
}

namespace {

// Appends Prometheus text lines: a family's HELP and TYPE once, then its samples.
class Writer {
 public:
  Writer(std::string& out, std::string_view prefix) : out_(out), prefix_(prefix) {}

  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    name_into(name);
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    name_into(name);
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // name{labels,extra} value
  void sample(const char* name, std::string_view labels, std::string_view extra, const char* value) {
    name_into(name);
    if (!labels.empty() || !extra.empty()) {
      out_ += '{';
      out_ += labels;
      if (!labels.empty() && !extra.empty()) out_ += ',';
      out_ += extra;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(const char* name, std::string_view labels, std::string_view extra, std::uint64_t value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%" PRIu64, value);
    sample(name, labels, extra, buf);
  }

 private:
  void name_into(const char* name) {
    out_ += prefix_;
    out_ += '_';
    out_ += name;
  }
  std::string& out_;
  std::string_view prefix_;
};

using Ops = SchedulerMetrics::Ops;

// The families with one value per snapshot.
struct Scalar {
  const char* name;
  const char* type;
  const char* help;
  std::uint64_t (*value)(const SchedulerMetrics&);
};
constexpr Scalar kScalars[] = {
    {"bytes_in_total", "counter", "Bytes received and read.", [](const SchedulerMetrics& m) { return m.bytes_in; }},
    {"bytes_out_total", "counter", "Bytes sent and written.", [](const SchedulerMetrics& m) { return m.bytes_out; }},
    {"loop_turns_total", "counter", "Passes of the event loop over its ready coroutines.",
     [](const SchedulerMetrics& m) { return m.loop_turns; }},
    {"blocking_waits_total", "counter", "Times the event loop went to sleep in its backend.",
     [](const SchedulerMetrics& m) { return m.blocking_waits; }},
    {"wakeups_total", "counter", "Cross-thread wakeups sent to the sleeping event loop.",
     [](const SchedulerMetrics& m) { return m.wakeups; }},
    {"coop_yields_total", "counter", "Tasks made to yield after too many operations finished without suspending.",
     [](const SchedulerMetrics& m) { return m.coop_yields; }},
    {"stalls_total", "counter", "Tasks that ran longer than the stall threshold without suspending.",
     [](const SchedulerMetrics& m) { return m.stalls; }},
    {"sq_full_waits_total", "counter",
     "io_uring: times the submission queue was full when an operation wanted an entry.",
     [](const SchedulerMetrics& m) { return m.sq_full_waits; }},
    {"cq_overflows_total", "counter", "io_uring: times the completion queue had overflowed into the kernel's backlog.",
     [](const SchedulerMetrics& m) { return m.cq_overflows; }},
    {"enobufs_rearms_total", "counter", "io_uring: multishot receives that ran out of provided buffers.",
     [](const SchedulerMetrics& m) { return m.enobufs_rearms; }},
    {"ready_queue", "gauge", "Coroutines ready to run at the end of the last loop turn.",
     [](const SchedulerMetrics& m) { return m.ready_queue; }},
    {"timers_armed", "gauge", "Timers armed (deadlines, sleeps) at the end of the last loop turn.",
     [](const SchedulerMetrics& m) { return m.timers_armed; }},
};

// The families with one value per kind used, per snapshot.
struct PerKind {
  const char* name;
  const char* type;
  const char* help;
  std::uint64_t (*value)(const Ops&);
};
constexpr PerKind kPerKind[] = {
    {"ops_started_total", "counter", "I/O operations handed to the scheduler, by kind.",
     [](const Ops& o) { return o.started; }},
    {"ops_completed_total", "counter", "I/O operations finished with a result, by kind.",
     [](const Ops& o) { return o.completed; }},
    {"ops_failed_total", "counter", "I/O operations finished with an error (cancellations and timeouts included).",
     [](const Ops& o) { return o.failed; }},
    {"ops_in_flight", "gauge", "I/O operations started and not finished, by kind.",
     [](const Ops& o) { return o.in_flight(); }},
};

}  // namespace

std::string format_prometheus(std::span<const LabeledMetrics> sets, std::string_view prefix) {
  std::string out;
  out.reserve(2048 + 2048 * sets.size());
  Writer w(out, prefix);
  // Per kind: only the kinds that have been used, so the page stays short.
  for (const PerKind& f : kPerKind) {
    w.family(f.name, f.type, f.help);
    for (const LabeledMetrics& set : sets) {
      for (std::size_t i = 0; i < kOpCodeCount; ++i) {
        if (set.metrics.ops[i].started == 0) continue;
        const std::string kind = std::string("op=\"") + to_string(static_cast<OpCode>(i)) + '"';
        w.sample(f.name, set.labels, kind, f.value(set.metrics.ops[i]));
      }
    }
  }
  for (const Scalar& f : kScalars) {
    w.family(f.name, f.type, f.help);
    for (const LabeledMetrics& set : sets) w.sample(f.name, set.labels, {}, f.value(set.metrics));
  }
  // The histogram: cumulative buckets at the powers of two, in seconds.
  w.family("loop_turn_seconds", "histogram", "Duration of event loop turns (tasks running without suspending).");
  for (const LabeledMetrics& set : sets) {
    const SchedulerMetrics& m = set.metrics;
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i + 1 < SchedulerMetrics::kTurnBuckets; ++i) {
      cumulative += m.loop_turn_buckets[i];
      char le[48];
      std::snprintf(le, sizeof le, "le=\"%.9g\"", static_cast<double>(std::uint64_t{2} << i) * 1e-9);
      w.sample("loop_turn_seconds_bucket", set.labels, le, cumulative);
    }
    cumulative += m.loop_turn_buckets[SchedulerMetrics::kTurnBuckets - 1];
    w.sample("loop_turn_seconds_bucket", set.labels, "le=\"+Inf\"", cumulative);
    char sum[32];
    std::snprintf(sum, sizeof sum, "%.9f", static_cast<double>(m.loop_turn_ns) * 1e-9);
    w.sample("loop_turn_seconds_sum", set.labels, {}, sum);
    w.sample("loop_turn_seconds_count", set.labels, {}, cumulative);  // = +Inf, even if loop_turns moved on
  }
  return out;
}

std::string format_prometheus(const SchedulerMetrics& m, std::string_view prefix, std::string_view labels) {
  const LabeledMetrics one{labels, m};
  return format_prometheus(std::span<const LabeledMetrics>(&one, 1), prefix);
}

}  // namespace galay
