// Copy a file with the batched file API: each round reads up to --qd blocks in one
// FileBatch (one submission), then writes them back in another.
//
//   file_copy SRC DST [--qd 8] [--block-kib 256] [--backend epoll|io_uring|kqueue|auto]
//
// DST is created or truncated. Short reads (end of file) are handled; a short write is
// finished with plain write_at calls. Exit status 0 on success, 1 on any I/O error (the
// message names the operation and offset), 2 on bad arguments.
#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "args.h"  // the programs' shared command-line parser (support/args.h)
#include "galay-kernel/galay-kernel.h"

using namespace galay;

namespace {

struct Config {
  std::string src, dst;
  std::size_t queue_depth = 8;
  std::size_t block = 256 * 1024;
  BackendKind backend = BackendKind::automatic;
};

Task<int> copy(const Config& cfg) {
  // Opens and stat through the loop (io_uring OPENAT/STATX, the blocking pool elsewhere).
  auto src = co_await File::open_async(cfg.src, O_RDONLY);
  if (!src) {
    std::fprintf(stderr, "file_copy: open %s: %s\n", cfg.src.c_str(), src.error().message().c_str());
    co_return 1;
  }
  auto dst = co_await File::open_async(cfg.dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!dst) {
    std::fprintf(stderr, "file_copy: open %s: %s\n", cfg.dst.c_str(), dst.error().message().c_str());
    co_return 1;
  }
  auto st = co_await src->stat();
  if (!st) {
    std::fprintf(stderr, "file_copy: stat %s: %s\n", cfg.src.c_str(), st.error().message().c_str());
    co_return 1;
  }
  std::uint64_t size = st->size;
  if (st->type == fs::FileType::block) {  // a block device's size comes from an ioctl
    auto dev_size = src->size();
    if (!dev_size) {
      std::fprintf(stderr, "file_copy: size of %s: %s\n", cfg.src.c_str(), dev_size.error().message().c_str());
      co_return 1;
    }
    size = *dev_size;
  }
  std::vector<std::byte> buffer(cfg.queue_depth * cfg.block);
  FileBatch reads(cfg.queue_depth), writes(cfg.queue_depth);
  std::uint64_t offset = 0;
  while (offset < size) {
    // 1. Read up to queue_depth blocks at once.
    reads.clear();
    std::size_t blocks = 0;
    for (; blocks < cfg.queue_depth && offset + blocks * cfg.block < size; ++blocks)
      reads.read_at(*src, std::span(buffer.data() + blocks * cfg.block, cfg.block), offset + blocks * cfg.block);
    if (auto ok = co_await reads.submit(); !ok) {
      std::fprintf(stderr, "file_copy: read at %llu: %s\n", static_cast<unsigned long long>(offset),
                   ok.error().message().c_str());
      co_return 1;
    }
    // 2. Write back what was read, in order; a short read ends the copy (the file shrank).
    writes.clear();
    std::vector<std::size_t> lengths(blocks);
    std::size_t total = 0;
    bool short_read = false;
    for (std::size_t i = 0; i < blocks && !short_read; ++i) {
      lengths[i] = *reads.result(i);
      if (lengths[i] == 0) break;
      writes.write_at(*dst, std::span<const std::byte>(buffer.data() + i * cfg.block, lengths[i]),
                      offset + i * cfg.block);
      total += lengths[i];
      short_read = lengths[i] < cfg.block;
    }
    if (total == 0) break;
    if (auto ok = co_await writes.submit(); !ok) {
      std::fprintf(stderr, "file_copy: write at %llu: %s\n", static_cast<unsigned long long>(offset),
                   ok.error().message().c_str());
      co_return 1;
    }
    for (std::size_t i = 0; i < writes.size(); ++i) {
      std::size_t done = *writes.result(i);
      while (done < lengths[i]) {  // finish a short write
        auto n = co_await dst->write_at(buffer.data() + i * cfg.block + done, lengths[i] - done,
                                        offset + i * cfg.block + done);
        if (!n || *n == 0) {
          std::fprintf(stderr, "file_copy: write at %llu: %s\n",
                       static_cast<unsigned long long>(offset + i * cfg.block + done),
                       n ? "no progress" : n.error().message().c_str());
          co_return 1;
        }
        done += *n;
      }
    }
    offset += total;
    if (short_read) break;
  }
  if (auto ok = co_await dst->fsync(); !ok) {
    std::fprintf(stderr, "file_copy: fsync %s: %s\n", cfg.dst.c_str(), ok.error().message().c_str());
    co_return 1;
  }
  std::printf("file_copy: %llu bytes, queue depth %zu, %zu KiB blocks\n", static_cast<unsigned long long>(offset),
              cfg.queue_depth, cfg.block / 1024);
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  std::size_t block_kib = cfg.block / 1024;
  cli::Parser args("file_copy", "SRC DST [options]");
  args.positional("SRC", "the file to copy", cfg.src)
      .positional("DST", "the copy (created or truncated)", cfg.dst)
      .integer("--qd", "N", "blocks read (then written) per batch (default 8)", cfg.queue_depth, 1, 1024)
      .integer("--block-kib", "KIB", "block size in KiB (default 256)", block_kib, 4, 64 * 1024)
      .backend(cfg.backend);
  args.parse(argc, argv);
  cfg.block = block_kib * 1024;
  auto sched = Scheduler::create(Scheduler::Options{cfg.backend});
  if (!sched) {
    std::fprintf(stderr, "file_copy: no scheduler: %s\n", sched.error().message().c_str());
    return 1;
  }
  return (*sched)->block_on(copy(cfg));
}
