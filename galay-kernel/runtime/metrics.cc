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

// Appends the Prometheus text lines of one metric family.
class Writer {
 public:
  Writer(std::string& out, std::string_view prefix, std::string_view labels)
      : out_(out), prefix_(prefix), labels_(labels) {}

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
  void sample(const char* name, std::string_view extra, const char* value) {
    name_into(name);
    if (!labels_.empty() || !extra.empty()) {
      out_ += '{';
      out_ += labels_;
      if (!labels_.empty() && !extra.empty()) out_ += ',';
      out_ += extra;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(const char* name, std::string_view extra, std::uint64_t value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%" PRIu64, value);
    sample(name, extra, buf);
  }
  void counter(const char* name, const char* help, std::uint64_t value) {
    family(name, "counter", help);
    sample(name, {}, value);
  }
  void gauge(const char* name, const char* help, std::uint64_t value) {
    family(name, "gauge", help);
    sample(name, {}, value);
  }

 private:
  void name_into(const char* name) {
    out_ += prefix_;
    out_ += '_';
    out_ += name;
  }
  std::string& out_;
  std::string_view prefix_;
  std::string_view labels_;
};

}  // namespace

std::string format_prometheus(const SchedulerMetrics& m, std::string_view prefix, std::string_view labels) {
  std::string out;
  out.reserve(4096);
  Writer w(out, prefix, labels);
  // Per kind: only the kinds that have been used, so the page stays short.
  struct PerKind {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t (*value)(const SchedulerMetrics::Ops&);
  };
  static constexpr PerKind kPerKind[] = {
      {"ops_started_total", "counter", "I/O operations handed to the scheduler, by kind.",
       [](const SchedulerMetrics::Ops& o) { return o.started; }},
      {"ops_completed_total", "counter", "I/O operations finished with a result, by kind.",
       [](const SchedulerMetrics::Ops& o) { return o.completed; }},
      {"ops_failed_total", "counter", "I/O operations finished with an error (cancellations and timeouts included).",
       [](const SchedulerMetrics::Ops& o) { return o.failed; }},
      {"ops_in_flight", "gauge", "I/O operations started and not finished, by kind.",
       [](const SchedulerMetrics::Ops& o) { return o.in_flight(); }},
  };
  for (const PerKind& f : kPerKind) {
    w.family(f.name, f.type, f.help);
    for (std::size_t i = 0; i < kOpCodeCount; ++i) {
      if (m.ops[i].started == 0) continue;
      const std::string label = std::string("op=\"") + to_string(static_cast<OpCode>(i)) + '"';
      w.sample(f.name, label, f.value(m.ops[i]));
    }
  }
  w.counter("bytes_in_total", "Bytes received and read.", m.bytes_in);
  w.counter("bytes_out_total", "Bytes sent and written.", m.bytes_out);
  w.counter("loop_turns_total", "Passes of the event loop over its ready coroutines.", m.loop_turns);
  // The histogram: cumulative buckets at the powers of two, in seconds.
  w.family("loop_turn_seconds", "histogram", "Duration of event loop turns (tasks running without suspending).");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i + 1 < SchedulerMetrics::kTurnBuckets; ++i) {
    cumulative += m.loop_turn_buckets[i];
    char le[48];
    std::snprintf(le, sizeof le, "le=\"%.9g\"", static_cast<double>(std::uint64_t{2} << i) * 1e-9);
    w.sample("loop_turn_seconds_bucket", le, cumulative);
  }
  cumulative += m.loop_turn_buckets[SchedulerMetrics::kTurnBuckets - 1];
  w.sample("loop_turn_seconds_bucket", "le=\"+Inf\"", cumulative);
  char sum[32];
  std::snprintf(sum, sizeof sum, "%.9f", static_cast<double>(m.loop_turn_ns) * 1e-9);
  w.sample("loop_turn_seconds_sum", {}, sum);
  w.sample("loop_turn_seconds_count", {}, cumulative);  // = +Inf, even if loop_turns moved on
  w.counter("blocking_waits_total", "Times the event loop went to sleep in its backend.", m.blocking_waits);
  w.counter("wakeups_total", "Cross-thread wakeups sent to the sleeping event loop.", m.wakeups);
  w.counter("coop_yields_total", "Tasks made to yield after too many operations finished without suspending.",
            m.coop_yields);
  w.counter("stalls_total", "Tasks that ran longer than the stall threshold without suspending.", m.stalls);
  w.counter("sq_full_waits_total", "io_uring: times the submission queue was full when an operation wanted an entry.",
            m.sq_full_waits);
  w.counter("cq_overflows_total", "io_uring: times the completion queue had overflowed into the kernel's backlog.",
            m.cq_overflows);
  w.counter("enobufs_rearms_total", "io_uring: multishot receives that ran out of provided buffers.", m.enobufs_rearms);
  w.gauge("ready_queue", "Coroutines ready to run at the end of the last loop turn.", m.ready_queue);
  w.gauge("timers_armed", "Timers armed (deadlines, sleeps) at the end of the last loop turn.", m.timers_armed);
  return out;
}

}  // namespace galay
