// bench_file_io: random file I/O through galay-kernel's File and FileBatch.
//
//   bench_file_io [-w workers] [-n ops-per-worker] [-b block] [-batch N] [-d dir]
//                 [--direct | --no-direct] [--backend epoll|io_uring|kqueue|auto]
//                 [--qd depth] [--rw read|write|randrw] [--file-size bytes]
//                 [--duration seconds] [--file path] [--verify] [--json] [--seed n]
//                 [--huge-pages on|off] [--mlock] [--fixed-buffers] [--register-files]
//                 [--sqpoll[=cpu]]
//
// Every worker is a set of coroutines on one Scheduler thread (the library's model: one
// loop per thread). A worker keeps `--qd` requests in flight: with -batch 1 that is qd
// coroutines ("lanes") issuing one request each at a time; with -batch N it is qd/N lanes
// each submitting a FileBatch of N requests and waiting for all N. --qd defaults to the
// batch size, so `-batch 4` alone means 4 in flight. Requests go to uniformly random
// block-aligned offsets of the worker's file (all patterns are random: read = random
// reads, write = random writes, randrw = 50/50 mix).
//
// Files: each worker gets its own file of --file-size bytes in -d, created and fully
// written first (O_DIRECT reads of never-written blocks would cost the device nothing),
// then removed at exit, also after SIGINT/SIGTERM. --file PATH instead shares one existing
// file or block device among all workers (like fio's filename= with numjobs) and leaves it
// in place.
// O_DIRECT (the default) is refused on tmpfs, which does not support it.
//
// Counting: -n requests per worker, or --duration seconds (time-based; then -n is ignored
// and requests completing after the deadline are not counted). Times are steady_clock
// readings taken when each request completes: the run lasts from the start to the last
// counted completion (count mode) or to the deadline (time mode). A request that fails,
// or moves fewer bytes than the block, or (with --verify) reads back data that is not
// what was last written there, counts as one error. --verify makes every lane own a
// disjoint set of blocks so the expected content of each block is known exactly.
//
// Buffers: by default each lane's buffers are heap AlignedBuffers. --huge-pages or --mlock
// puts every buffer of the run in one MappedMemory region instead (common/mapped_memory.h:
// huge pages when asked, reserved and the region is at least one huge page; pre-faulted;
// mlocked with --mlock), one block-aligned slot per request in flight; what the region got
// is printed ("buffer memory: ...") and carried in --json. --fixed-buffers makes that region
// a RegisteredBuffers (io/registered_buffers.h): on io_uring every request is then a
// READ_FIXED/WRITE_FIXED on pages pinned once; elsewhere it changes nothing.
// --register-files puts every file in the ring's registered-file table
// (FdOwner::register_file; io_uring only, like fio's --registerfiles).
//
// Output: each second a progress line and the scheduler's live metrics (ops/s, MB/s, loop
// turns, sleeps, and io_uring's SQ-full, CQ-overflow and ENOBUFS counts; stderr with
// --json), then the table (or one JSON object, the metrics' totals under "metrics"). MB = 1024*1024 bytes. Exit status:
// 0 with no errors, 1 with errors, 2 on bad arguments or set-up failure.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "args.h"
#include "bench_metrics.h"
#include "galay-kernel/galay-kernel.h"

namespace {

using namespace galay;
using namespace std::chrono_literals;

constexpr long kTmpfsMagic = 0x01021994;
constexpr std::size_t kLayoutChunk = 1 << 20;

std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted.store(true, std::memory_order_relaxed); }

// ---------------------------------------------------------------------------------------
// Arguments

enum class Rw { read, write, randrw };

struct Config {
  std::size_t workers = 4;
  std::uint64_t ops = 1000;  // per worker
  std::size_t block = 4096;
  std::size_t batch = 1;
  std::size_t qd = 0;  // 0: same as batch
  std::string dir = "/tmp";
  std::string file;  // shared existing file
  bool direct = true;
  BackendKind backend = BackendKind::automatic;
  Rw rw = Rw::randrw;
  std::uint64_t file_size = 64ull << 20;
  bool file_size_given = false;
  double duration_s = 0;  // 0: count mode
  bool verify = false;
  bool json = false;
  std::uint64_t seed = 0x9e3779b97f4a7c15ull;
  MemoryOptions memory;  // --huge-pages, --mlock
  bool sqpoll = false;   // --sqpoll[=CPU]
  int sqpoll_cpu = -1;
  bool mapped_buffers = false;  // any of them given: the buffers live in one region
  bool fixed_buffers = false;   // --fixed-buffers: that region is registered (RegisteredBuffers)
  bool register_files = false;  // --register-files: FdOwner::register_file on every file
};

Config parse_args(int argc, char** argv) {
  Config cfg;
  cli::Parser args("bench_file_io", "[options]");
  args.size("-w, --workers", "N", "concurrent workers (default 4)", cfg.workers, 1, 4096)
      .size("-n, --ops", "N", "requests per worker (default 1000; ignored with --duration)", cfg.ops, 1, 1ull << 40)
      .size("-b, --block", "BYTES", "block size (default 4096)", cfg.block, 512, 64u << 20)
      .size("-batch, --batch", "N", "requests per FileBatch submit (default 1)", cfg.batch, 1, 1024)
      .text("-d, --dir", "DIR", "directory for the test files (default /tmp)", cfg.dir)
      .flag("--direct", "O_DIRECT (the default)", cfg.direct)
      .flag("--no-direct", "buffered I/O through the page cache", cfg.direct, false)
      .backend(cfg.backend)
      .size("--qd", "N", "requests in flight per worker (default: the batch size)", cfg.qd, 1, 4096)
      .choice("--rw", "MODE", "read|write|randrw, all at random offsets (default randrw)", cfg.rw,
              {{"read", Rw::read},
               {"write", Rw::write},
               {"randrw", Rw::randrw},
               {"randread", Rw::read},
               {"randwrite", Rw::write},
               {"rw", Rw::randrw}})
      .option("--file-size", "BYTES", "size of each worker's file (default 64M)",
              [&cfg](std::string_view v) {
                auto n = cli::parse_size(v, 4096, 1ull << 44);
                if (!n) return std::string("a size in [4096, 17592186044416] (K/M/G suffixes allowed)");
                cfg.file_size = *n;
                cfg.file_size_given = true;
                return std::string();
              })
      .real("--duration", "SECONDS", "time-based run instead of -n", cfg.duration_s, 0, 86400, /*open_low=*/true)
      .text("--file", "PATH", "use this existing file for every worker (not removed)", cfg.file)
      .flag("--verify", "check that reads return what was last written", cfg.verify)
      .size("--seed", "N", "random seed (default fixed)", cfg.seed, 0, UINT64_MAX)
      .option("--huge-pages", "on|off", "all buffers in one mapped region, on huge pages (on) or not (off)",
              [&cfg](std::string_view v) {
                if (v != "on" && v != "off") return std::string("on or off");
                cfg.memory.huge_pages = v == "on";
                cfg.mapped_buffers = true;
                return std::string();
              })
      .flag("--mlock", "all buffers in one mapped region, locked in memory (mlock)", cfg.memory.lock)
      .flag("--fixed-buffers", "all buffers in one region registered with the backend (io_uring: READ/WRITE_FIXED)",
            cfg.fixed_buffers)
      .flag("--register-files", "put the files in the backend's registered-file table (io_uring)", cfg.register_files)
      .sqpoll(cfg.sqpoll, cfg.sqpoll_cpu)
      .flag("--json", "print one JSON object instead of the table", cfg.json);
  args.parse(argc, argv);
  if (cfg.memory.lock || cfg.fixed_buffers) cfg.mapped_buffers = true;
  if (cfg.qd == 0) cfg.qd = cfg.batch;
  if (cfg.qd < cfg.batch) cfg.qd = cfg.batch;
  return cfg;
}

// ---------------------------------------------------------------------------------------
// Block content: a function of (block number, version), so reads can be checked.

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void fill_block(std::byte* p, std::size_t len, std::uint64_t block, std::uint32_t version) {
  const std::uint64_t base = mix(block * 0x100000001b3ull ^ (std::uint64_t(version) << 40));
  for (std::size_t k = 0; k + 8 <= len; k += 8) {
    std::uint64_t w = base + k * 0x9e3779b97f4a7c15ull;
    std::memcpy(p + k, &w, 8);
  }
}

bool check_block(const std::byte* p, std::size_t len, std::uint64_t block, std::uint32_t version) {
  const std::uint64_t base = mix(block * 0x100000001b3ull ^ (std::uint64_t(version) << 40));
  for (std::size_t k = 0; k + 8 <= len; k += 8) {
    std::uint64_t w = base + k * 0x9e3779b97f4a7c15ull, got;
    std::memcpy(&got, p + k, 8);
    if (got != w) return false;
  }
  return true;
}

struct Rng {
  std::uint64_t s;
  std::uint64_t next() {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
};

// ---------------------------------------------------------------------------------------
// Shared state (one scheduler thread: plain counters)

constexpr std::uint32_t kUnknown = UINT32_MAX;  // a failed write left the block undefined

struct Target {
  File file;
  std::string path;
  bool remove = false;
  std::vector<std::uint32_t> version;  // --verify: last version written per block
  std::size_t lanes = 0;               // lanes sharing this file (block partitioning)
};

struct Stats {
  std::uint64_t reads = 0, writes = 0, errors = 0;
  Clock::time_point last_completion{};
};

struct Run {
  Config cfg;
  std::vector<std::unique_ptr<Target>> targets;
  std::uint64_t nblocks = 0;
  Clock::time_point start{};
  Clock::time_point deadline = Clock::time_point::max();
  Stats stats;
  bool finished = false;
  std::size_t first_errors_shown = 0;
  MappedMemory mapped;                       // --huge-pages/--mlock: every lane's buffers
  std::unique_ptr<RegisteredBuffers> fixed;  // --fixed-buffers: the same, registered
  std::span<std::byte> buffers;              // the region in use (empty: heap buffers)
  std::string buffers_described;             // what the region got
  bool files_registered = false;             // --register-files took effect
  std::size_t buffer_stride = 0;             // bytes between two buffers in it (block-aligned)

  bool stopping() const { return g_interrupted.load(std::memory_order_relaxed) || Clock::now() >= deadline; }

  void error(const char* what, const std::error_code& ec) {
    if (first_errors_shown++ < 5) std::fprintf(stderr, "bench_file_io: %s: %s\n", what, ec.message().c_str());
  }

  // Account one finished request.
  void record(bool is_read, const Expected<std::size_t>& r, Clock::time_point now, Target& t, std::uint64_t block,
              const std::byte* data) {
    if (now > deadline) return;  // time mode: finished after the window closed
    stats.last_completion = now;
    bool ok = r && *r == cfg.block;
    if (!r) {
      error(is_read ? "read" : "write", r.error());
    } else if (!ok) {
      error(is_read ? "short read" : "short write", std::make_error_code(std::errc::io_error));
    }
    if (cfg.verify) {
      std::uint32_t& v = t.version[block];
      if (!is_read && !ok) v = kUnknown;
      if (is_read && ok && v != kUnknown && !check_block(data, cfg.block, block, v)) {
        ok = false;
        if (first_errors_shown++ < 5)
          std::fprintf(stderr, "bench_file_io: verify: block %" PRIu64 " of %s is not version %u\n", block,
                       t.path.c_str(), v);
      }
    }
    if (!ok) ++stats.errors;
    (is_read ? stats.reads : stats.writes) += 1;
  }
};

// One lane: a coroutine keeping one request (or one batch) in flight.
struct Lane {
  Run* run;
  Target* target;
  std::size_t index;  // among the lanes sharing target (for --verify partitioning)
  std::uint64_t quota;
  Rng rng;
  std::byte* buffers = nullptr;  // this lane's slots in Run::buffers; nullptr: heap buffers

  bool pick_read() {
    switch (run->cfg.rw) {
      case Rw::read:
        return true;
      case Rw::write:
        return false;
      case Rw::randrw:
        return (rng.next() >> 63) != 0;
    }
    return true;
  }
  std::uint64_t pick_block() {
    if (!run->cfg.verify) return rng.next() % run->nblocks;
    const std::uint64_t part = run->nblocks / target->lanes;  // blocks owned by each lane
    return (rng.next() % part) * target->lanes + index;
  }
};

Task<void> lane_single(Lane lane) {
  Run& run = *lane.run;
  const std::size_t bs = run.cfg.block;
  AlignedBuffer heap = lane.buffers != nullptr
                           ? AlignedBuffer()
                           : AlignedBuffer(bs, std::max<std::size_t>(4096, lane.target->file.logical_block_size()));
  const std::span<std::byte> buf = lane.buffers != nullptr ? std::span<std::byte>(lane.buffers, bs) : heap.span();
  fill_block(buf.data(), bs, 0, 0);
  const bool timed = run.cfg.duration_s > 0;
  for (std::uint64_t done = 0; timed || done < lane.quota; ++done) {
    if (run.stopping()) break;
    const bool is_read = lane.pick_read();
    const std::uint64_t block = lane.pick_block();
    if (!is_read && run.cfg.verify) {
      std::uint32_t& v = lane.target->version[block];
      v = v == kUnknown ? 1 : v + 1;
      fill_block(buf.data(), bs, block, v);
    }
    Expected<std::size_t> r = is_read ? co_await lane.target->file.read_at(buf, block * bs)
                                      : co_await lane.target->file.write_at(buf, block * bs);
    run.record(is_read, r, Clock::now(), *lane.target, block, buf.data());
  }
}

Task<void> lane_batch(Lane lane) {
  Run& run = *lane.run;
  const std::size_t bs = run.cfg.block, n = run.cfg.batch;
  const std::size_t align = std::max<std::size_t>(4096, lane.target->file.logical_block_size());
  std::vector<AlignedBuffer> heap;
  std::vector<std::span<std::byte>> bufs;
  for (std::size_t i = 0; i < n; ++i) {
    if (lane.buffers != nullptr) {
      bufs.emplace_back(lane.buffers + i * run.buffer_stride, bs);
    } else {
      heap.emplace_back(bs, align);
      bufs.push_back(heap.back().span());
    }
    fill_block(bufs.back().data(), bs, 0, 0);
  }
  std::vector<std::uint64_t> blocks(n);
  std::vector<bool> reads(n);
  FileBatch batch(n);
  const bool timed = run.cfg.duration_s > 0;
  std::uint64_t left = lane.quota;
  while (timed || left > 0) {
    if (run.stopping()) break;
    const std::size_t count = timed ? n : static_cast<std::size_t>(std::min<std::uint64_t>(n, left));
    batch.clear();
    for (std::size_t i = 0; i < count; ++i) {
      reads[i] = lane.pick_read();
      std::uint64_t b;
      // --verify: two requests of one batch run concurrently, so never on the same block.
      do b = lane.pick_block();
      while (run.cfg.verify &&
             std::find(blocks.begin(), blocks.begin() + std::ptrdiff_t(i), b) != blocks.begin() + std::ptrdiff_t(i));
      blocks[i] = b;
      if (reads[i]) {
        batch.read_at(lane.target->file, bufs[i], b * bs);
      } else {
        if (run.cfg.verify) {
          std::uint32_t& v = lane.target->version[b];
          v = v == kUnknown ? 1 : v + 1;
          fill_block(bufs[i].data(), bs, b, v);
        }
        batch.write_at(lane.target->file, bufs[i], b * bs);
      }
    }
    (void)co_await batch.submit();
    const Clock::time_point now = Clock::now();
    for (std::size_t i = 0; i < count; ++i)
      run.record(reads[i], batch.result(i), now, *lane.target, blocks[i], bufs[i].data());
    left -= std::min<std::uint64_t>(left, count);
  }
}

// One line per second, on a steady schedule.
Task<void> reporter(Run* run) {
  FILE* out = run->cfg.json ? stderr : stdout;
  Stats prev{};
  Scheduler& sched = *Scheduler::current();
  SchedulerMetrics prev_metrics = sched.metrics();
  for (int s = 1;; ++s) {
    auto r = co_await sleep_until(run->start + std::chrono::seconds(s));
    if (!r || run->finished) co_return;
    const Stats cur = run->stats;
    const SchedulerMetrics metrics = sched.metrics();
    std::fprintf(out,
                 "[%4ds] read %8" PRIu64 " IOPS  write %8" PRIu64 " IOPS  total %10" PRIu64 " ops  errors %" PRIu64
                 "\n        scheduler: %s\n",
                 s, cur.reads - prev.reads, cur.writes - prev.writes, cur.reads + cur.writes, cur.errors,
                 bench::metrics_line(metrics, prev_metrics, 1.0).c_str());
    std::fflush(out);
    prev = cur;
    prev_metrics = metrics;
  }
}

// Write the whole file once (version 0 everywhere), 8 chunks of ~1 MiB in flight, then fdatasync.
Task<bool> lay_out(Target& t, const Config& cfg, std::uint64_t size) {
  constexpr std::size_t kInFlight = 8;
  const std::size_t blocks_per_chunk = std::max<std::size_t>(1, kLayoutChunk / cfg.block);
  const std::size_t chunk = blocks_per_chunk * cfg.block;
  std::vector<AlignedBuffer> bufs;
  for (std::size_t i = 0; i < kInFlight; ++i) bufs.emplace_back(chunk, 4096);
  FileBatch batch(kInFlight);
  for (std::uint64_t off = 0; off < size;) {
    batch.clear();
    for (std::size_t i = 0; i < kInFlight && off < size; ++i) {
      const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - off));
      for (std::uint64_t b = 0; b < blocks_per_chunk && b * cfg.block < len; ++b)
        fill_block(bufs[i].data() + b * cfg.block, cfg.block, off / cfg.block + b, 0);
      batch.write_at(t.file, bufs[i].span(0, len), off);
      off += len;
    }
    if (auto r = co_await batch.submit(); !r) {
      std::fprintf(stderr, "bench_file_io: writing %s: %s\n", t.path.c_str(), r.error().message().c_str());
      co_return false;
    }
  }
  if (auto r = co_await t.file.fdatasync(); !r) {
    std::fprintf(stderr, "bench_file_io: fdatasync %s: %s\n", t.path.c_str(), r.error().message().c_str());
    co_return false;
  }
  co_return true;
}

Task<int> run_benchmark(Run* runp) {
  Run& run = *runp;
  Config& cfg = run.cfg;
  const int flags = O_RDWR | (cfg.direct ? O_DIRECT : 0);

  // ---- files ----
  if (!cfg.file.empty()) {
    auto f = File::open(cfg.file, flags);
    if (!f) {
      std::fprintf(stderr, "bench_file_io: open %s: %s\n", cfg.file.c_str(), f.error().message().c_str());
      co_return 2;
    }
    auto size = f->size();
    if (!size) co_return 2;
    if (!cfg.file_size_given) cfg.file_size = *size;
    if (*size < cfg.file_size) {
      std::fprintf(stderr, "bench_file_io: %s has %" PRIu64 " bytes, fewer than --file-size %" PRIu64 "\n",
                   cfg.file.c_str(), *size, cfg.file_size);
      co_return 2;
    }
    auto t = std::make_unique<Target>();
    t->file = std::move(*f);
    t->path = cfg.file;
    run.targets.push_back(std::move(t));
  } else {
    for (std::size_t w = 0; w < cfg.workers; ++w) {
      auto t = std::make_unique<Target>();
      t->path = cfg.dir + "/bench_file_io." + std::to_string(::getpid()) + "." + std::to_string(w);
      auto f = File::open(t->path, flags | O_CREAT | O_EXCL, 0600);
      if (!f) {
        std::fprintf(stderr, "bench_file_io: create %s: %s%s\n", t->path.c_str(), f.error().message().c_str(),
                     cfg.direct && f.error() == std::errc::invalid_argument
                         ? " (this filesystem rejects O_DIRECT; use --no-direct or another -d)"
                         : "");
        co_return 2;
      }
      t->file = std::move(*f);
      t->remove = true;
      run.targets.push_back(std::move(t));
    }
  }
  for (auto& t : run.targets) {
    if (!cfg.register_files) break;
    auto r = t->file.register_file();
    if (!r) {
      std::fprintf(stderr, "bench_file_io: --register-files: %s\n", r.error().message().c_str());
      co_return 2;
    }
    run.files_registered = *r;
  }
  const std::size_t bs = cfg.block;
  for (auto& t : run.targets) {
    if (cfg.direct && bs % t->file.logical_block_size() != 0) {
      std::fprintf(stderr, "bench_file_io: -b %zu is not a multiple of the O_DIRECT block size %zu of %s\n", bs,
                   t->file.logical_block_size(), t->path.c_str());
      co_return 2;
    }
  }
  run.nblocks = cfg.file_size / bs;
  const std::size_t lanes_per_worker = std::max<std::size_t>(1, cfg.qd / cfg.batch);
  const std::size_t lanes_per_file = cfg.file.empty() ? lanes_per_worker : lanes_per_worker * cfg.workers;
  if (run.nblocks < (cfg.verify ? lanes_per_file * cfg.batch : 1)) {
    std::fprintf(stderr, "bench_file_io: --file-size %" PRIu64 " is too small for this block size and depth\n",
                 cfg.file_size);
    co_return 2;
  }
  for (auto& t : run.targets) {
    if (t->remove) {
      const auto t0 = Clock::now();
      if (!co_await lay_out(*t, cfg, run.nblocks * bs)) co_return 2;
      if (!cfg.json && t.get() == run.targets.front().get())
        std::fprintf(stderr, "laid out %s (%" PRIu64 " MiB) in %.2f s\n", t->path.c_str(), (run.nblocks * bs) >> 20,
                     std::chrono::duration<double>(Clock::now() - t0).count());
    }
    if (cfg.verify) t->version.assign(run.nblocks, 0);
    t->lanes = lanes_per_file;
  }

  if (cfg.mapped_buffers) {
    std::size_t align = 4096;
    for (auto& t : run.targets) align = std::max(align, t->file.logical_block_size());
    run.buffer_stride = (bs + align - 1) / align * align;
    const std::size_t bytes = cfg.workers * lanes_per_worker * cfg.batch * run.buffer_stride;
    std::error_code failed;
    if (cfg.fixed_buffers) {
      if (align > 4096) failed = std::make_error_code(std::errc::invalid_argument);  // the region is page-aligned
      auto region = failed ? Expected<std::unique_ptr<RegisteredBuffers>>(make_error(failed))
                           : RegisteredBuffers::create(bytes, cfg.memory);
      if (region) {
        run.fixed = std::move(*region);
        run.buffers = run.fixed->bytes();
        run.buffers_described = run.fixed->describe();
      } else {
        failed = region.error();
      }
    } else if (auto mem = MappedMemory::map(bytes, cfg.memory, align)) {
      run.mapped = std::move(*mem);
      run.buffers = run.mapped.span();
      run.buffers_described = run.mapped.describe();
    } else {
      failed = mem.error();
    }
    if (failed) {
      std::fprintf(stderr, "bench_file_io: buffer memory: %s\n", failed.message().c_str());
      co_return 2;
    }
    if (!cfg.json) std::fprintf(stderr, "buffer memory: %s\n", run.buffers_described.c_str());
  }

  // ---- run ----
  std::vector<Task<void>> lanes;
  Rng seeder{cfg.seed | 1};
  std::size_t lane_no = 0;
  for (std::size_t w = 0; w < cfg.workers; ++w) {
    Target* t = run.targets[cfg.file.empty() ? w : 0].get();
    for (std::size_t l = 0; l < lanes_per_worker; ++l, ++lane_no) {
      // Split the worker's -n requests over its lanes.
      std::uint64_t quota = cfg.ops / lanes_per_worker + (l < cfg.ops % lanes_per_worker ? 1 : 0);
      std::byte* slots = run.buffers.empty() ? nullptr : run.buffers.data() + lane_no * cfg.batch * run.buffer_stride;
      Lane lane{&run, t, cfg.file.empty() ? l : lane_no, quota, Rng{seeder.next() | 1}, slots};
      lanes.push_back(cfg.batch > 1 ? lane_batch(lane) : lane_single(lane));
    }
  }
  run.start = Clock::now();
  run.stats.last_completion = run.start;
  if (cfg.duration_s > 0)
    run.deadline =
        run.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.duration_s));
  auto progress = spawn(reporter(&run));
  co_await when_all(std::move(lanes));
  run.finished = true;
  progress.cancel();
  co_await progress;
  co_return 0;
}

std::string grouped(std::uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

const char* rw_name(Rw rw) { return rw == Rw::read ? "read" : rw == Rw::write ? "write" : "randrw"; }

}  // namespace

int main(int argc, char** argv) {
  Run run;
  run.cfg = parse_args(argc, argv);
  Config& cfg = run.cfg;

  if (cfg.verify && !cfg.file.empty()) {
    std::fprintf(stderr, "bench_file_io: --verify needs files it lays out itself (drop --file)\n");
    return 2;
  }
  const std::string& where = cfg.file.empty() ? cfg.dir : cfg.file;
  struct statfs fs {};
  if (::statfs(where.c_str(), &fs) != 0) {
    std::fprintf(stderr, "bench_file_io: %s: %s\n", where.c_str(), std::strerror(errno));
    return 2;
  }
  struct stat st {};
  const bool block_device = ::stat(where.c_str(), &st) == 0 && S_ISBLK(st.st_mode);  // its node may sit on devtmpfs
  if (cfg.direct && fs.f_type == kTmpfsMagic && !block_device) {
    std::fprintf(stderr,
                 "bench_file_io: refusing to run: %s is on tmpfs, which does not support O_DIRECT "
                 "(the page cache is the storage there). Use -d on a disk-backed filesystem, or "
                 "--no-direct to measure buffered I/O.\n",
                 where.c_str());
    return 2;
  }

  Scheduler::Options opts;
  opts.backend = cfg.backend;
  opts.io_uring_sqpoll = cfg.sqpoll;
  opts.io_uring_sqpoll_cpu = cfg.sqpoll_cpu;
  auto sched = Scheduler::create(opts);
  if (!sched) {
    std::fprintf(stderr, "bench_file_io: backend %s: %s\n", std::string(to_string(cfg.backend)).c_str(),
                 sched.error().message().c_str());
    return 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  int rc = (*sched)->block_on(run_benchmark(&run));
  const SchedulerMetrics metrics = (*sched)->metrics();
  const std::string backend_desc = (*sched)->describe_backend();
  const std::string backend_name(to_string((*sched)->backend_kind()));
  // Close and remove the files (also after a failed set-up).
  for (auto& t : run.targets) {
    t->file = File();
    if (t->remove) ::unlink(t->path.c_str());
  }
  run.fixed.reset();  // unregistered while its scheduler lives
  sched->reset();
  if (rc != 0) return rc;

  const Stats& s = run.stats;
  const Clock::time_point end = cfg.duration_s > 0 && !g_interrupted ? run.deadline : s.last_completion;
  const double secs = std::max(1e-9, std::chrono::duration<double>(end - run.start).count());
  const double mb = 1024.0 * 1024.0;
  const double read_mb = double(s.reads) * double(cfg.block) / mb;
  const double write_mb = double(s.writes) * double(cfg.block) / mb;
  const std::size_t lanes_per_worker = std::max<std::size_t>(1, cfg.qd / cfg.batch);
  const std::size_t in_flight = lanes_per_worker * cfg.batch;

  if (cfg.json) {
    std::printf(
        "{\"backend\":\"%s\",\"direct\":%s,\"workers\":%zu,\"qd\":%zu,\"batch\":%zu,\"block\":%zu,\"rw\":\"%s\","
        "\"file_size\":%" PRIu64 ",\"verify\":%s,\"duration_s\":%.6f,\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
        ",\"read_mb\":%.3f,\"write_mb\":%.3f,\"read_iops\":%.1f,\"write_iops\":%.1f,\"iops\":%.1f,"
        "\"read_mbps\":%.3f,\"write_mbps\":%.3f,\"errors\":%" PRIu64
        ",\"interrupted\":%s,\"buffer_memory\":\"%s\","
        "\"files_registered\":%s,\"metrics\":%s}\n",
        backend_name.c_str(), cfg.direct ? "true" : "false", cfg.workers, in_flight, cfg.batch, cfg.block,
        rw_name(cfg.rw), run.nblocks * cfg.block, cfg.verify ? "true" : "false", secs, s.reads, s.writes, read_mb,
        write_mb, double(s.reads) / secs, double(s.writes) / secs, double(s.reads + s.writes) / secs, read_mb / secs,
        write_mb / secs, s.errors, g_interrupted ? "true" : "false",
        run.buffers.empty() ? "heap" : run.buffers_described.c_str(), run.files_registered ? "true" : "false",
        bench::metrics_json(metrics).c_str());
  } else {
    std::printf("\nbench_file_io: %s [%s]\n", backend_name.c_str(), backend_desc.c_str());
    std::printf("  %zu workers x %zu in flight (%zu lanes x batch %zu), %zu-byte blocks, %s, %s, %" PRIu64
                " MiB %s%s\n",
                cfg.workers, in_flight, lanes_per_worker, cfg.batch, cfg.block, rw_name(cfg.rw),
                cfg.direct ? "O_DIRECT" : "buffered", (run.nblocks * cfg.block) >> 20,
                cfg.file.empty() ? "per worker" : "shared file", cfg.verify ? ", verified" : "");
    std::printf("  buffers: %s\n",
                run.buffers.empty() ? "heap (AlignedBuffer per request slot)" : run.buffers_described.c_str());
    std::printf("  files: %s\n\n", run.files_registered ? "registered (IOSQE_FIXED_FILE)"
                                   : cfg.register_files ? "not registered (this backend has no file table)"
                                                        : "by descriptor");
    std::printf("| Metric | Value |\n|---|---|\n");
    std::printf("| Duration | %.3f s%s |\n", secs, g_interrupted ? " (interrupted)" : "");
    std::printf("| Total reads | %s |\n", grouped(s.reads).c_str());
    std::printf("| Total writes | %s |\n", grouped(s.writes).c_str());
    std::printf("| Data read | %.2f MB |\n", read_mb);
    std::printf("| Data written | %.2f MB |\n", write_mb);
    std::printf("| Read IOPS | %s |\n", grouped(std::uint64_t(double(s.reads) / secs + 0.5)).c_str());
    std::printf("| Write IOPS | %s |\n", grouped(std::uint64_t(double(s.writes) / secs + 0.5)).c_str());
    std::printf("| Read throughput | %.2f MB/s |\n", read_mb / secs);
    std::printf("| Write throughput | %.2f MB/s |\n", write_mb / secs);
    std::printf("| Errors | %s |\n", grouped(s.errors).c_str());
  }
  return s.errors == 0 ? 0 : 1;
}
