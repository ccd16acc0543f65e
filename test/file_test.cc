// Files on every backend: read-after-write (random offsets, past 4 GiB), batches, many
// coroutines on one file, EOF, O_DIRECT alignment errors, bad fds and paths, fsync,
// timeouts and cancellation while the kernel holds the buffer, scheduler shutdown with
// file ops pending.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

constexpr long kTmpfsMagic = 0x01021994;

std::byte pattern(std::uint64_t pos, unsigned seed) {
  return static_cast<std::byte>((pos * 131u + seed * 7u + (pos >> 9)) & 0xff);
}
void fill(std::span<std::byte> buf, std::uint64_t file_pos, unsigned seed) {
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = pattern(file_pos + i, seed);
}
bool matches(std::span<const std::byte> buf, std::uint64_t file_pos, unsigned seed) {
  for (std::size_t i = 0; i < buf.size(); ++i)
    if (buf[i] != pattern(file_pos + i, seed)) return false;
  return true;
}

class FileTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // Per-test directory; in the build tree when /tmp is tmpfs (tmpfs has no O_DIRECT).
    std::string base = "/tmp";
    struct statfs fs {};
    if (::statfs(base.c_str(), &fs) != 0 || fs.f_type == kTmpfsMagic) base = std::filesystem::current_path().string();
    dir_ = tmp_.create("galay_file_test", base);
    ASSERT_FALSE(dir_.empty()) << tmp_.error();
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Empty if O_DIRECT works in the test directory, else why not.
  std::string direct_unsupported() const {
    std::string p = path(".direct_probe");
    int fd = ::open(p.c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
    if (fd < 0) return std::string("open(O_DIRECT) in ") + dir_ + ": " + std::strerror(errno);
    ::close(fd);
    ::unlink(p.c_str());
    return {};
  }

  TempDir tmp_;  // removed after TearDown, once the scheduler is gone
  std::string dir_;
};

#define SKIP_WITHOUT_DIRECT()                                                      \
  do {                                                                             \
    if (std::string why = direct_unsupported(); !why.empty()) GTEST_SKIP() << why; \
  } while (0)

// Write all of `buf` at `offset` (file writes are normally complete in one call).
Task<bool> write_fully(File& f, std::span<const std::byte> buf, std::uint64_t offset) {
  while (!buf.empty()) {
    auto n = co_await f.write_at(buf, offset);
    EXPECT_TRUE(n && *n > 0) << (n ? "wrote 0" : n.error().message());
    if (!n || *n == 0) co_return false;
    buf = buf.subspan(*n);
    offset += *n;
  }
  co_return true;
}

TEST_P(FileTest, ReadAfterWriteAtRandomOffsetsAndPast4GiB) {
  auto body = [](std::string p) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    EXPECT_FALSE(f->is_direct());
    std::mt19937_64 rng(42);
    struct Piece {
      std::uint64_t offset;
      std::size_t len;
    };
    std::vector<Piece> pieces;
    // Non-overlapping slots of 64 KiB in the first 16 MiB, random length and position
    // inside the slot; plus pieces past 4 GiB, leaving a sparse hole.
    for (int i = 0; i < 40; ++i) {
      std::uint64_t slot = (rng() % 256) * 65536;
      bool taken = false;
      for (auto& q : pieces) taken |= q.offset / 65536 == slot / 65536;
      if (taken) continue;
      pieces.push_back({slot + rng() % 1000, 1 + rng() % 60000});
    }
    const std::uint64_t far = (5ull << 30) + 12345;
    pieces.push_back({far, 10000});
    pieces.push_back({(4ull << 30) - 3, 7});  // straddles the 4 GiB boundary
    unsigned seed = 1;
    for (auto& q : pieces) {
      std::vector<std::byte> buf(q.len);
      fill(buf, q.offset, seed);
      CO_ASSERT_TRUE(co_await write_fully(*f, buf, q.offset));
    }
    for (auto& q : pieces) {
      std::vector<std::byte> buf(q.len);
      auto n = co_await f->read_at(buf, q.offset);
      CO_ASSERT_TRUE(n);
      EXPECT_EQ(*n, q.len);
      EXPECT_TRUE(matches(buf, q.offset, seed)) << "offset " << q.offset;
    }
    auto size = f->size();
    CO_ASSERT_TRUE(size);
    EXPECT_EQ(*size, far + 10000);
    // The hole below the far piece reads as zeros.
    std::vector<std::byte> hole(4096, std::byte{1});
    auto n = co_await f->read_at(hole, far - 8192);
    CO_ASSERT_TRUE(n && *n == 4096);
    for (std::byte b : hole) EXPECT_EQ(b, std::byte{0});
  };
  run(body(path("random")));
}

TEST_P(FileTest, DirectReadAfterWriteAtRandomOffsetsAndPast4GiB) {
  SKIP_WITHOUT_DIRECT();
  auto body = [](std::string p) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT);
    CO_ASSERT_TRUE(f);
    EXPECT_TRUE(f->is_direct());
    const std::size_t bs = f->logical_block_size();
    EXPECT_GE(bs, 512u);
    EXPECT_EQ(bs & (bs - 1), 0u);
    std::mt19937_64 rng(7);
    std::vector<std::uint64_t> offsets;
    for (int i = 0; i < 32; ++i) offsets.push_back((static_cast<std::uint64_t>(i) * 64 + rng() % 32) * 4096);
    offsets.push_back((6ull << 30));
    offsets.push_back((4ull << 30) - 4096);  // the block just below 4 GiB
    for (std::uint64_t off : offsets) {
      AlignedBuffer buf(8192, bs);
      fill(buf.span(), off, 3);
      auto n = co_await f->write_at(buf.span(), off);
      CO_ASSERT_TRUE(n);
      EXPECT_EQ(*n, 8192u);
    }
    for (std::uint64_t off : offsets) {
      AlignedBuffer buf(8192, bs);
      auto n = co_await f->read_at(buf.span(), off);
      CO_ASSERT_TRUE(n);
      EXPECT_EQ(*n, 8192u);
      EXPECT_TRUE(matches(buf.span(), off, 3)) << "offset " << off;
    }
    // readv/writev on the direct path
    AlignedBuffer a(bs, bs), b(2 * bs, bs);
    fill(a.span(), 8 * bs, 9);
    fill(b.span(), 9 * bs, 9);
    iovec out[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
    auto w = co_await f->writev_at(out, 8 * bs);
    CO_ASSERT_TRUE(w && *w == 3 * bs);
    AlignedBuffer back(3 * bs, bs);
    iovec in[1] = {{back.data(), back.size()}};
    auto r = co_await f->readv_at(in, 8 * bs);
    CO_ASSERT_TRUE(r && *r == 3 * bs);
    EXPECT_TRUE(matches(back.span(), 8 * bs, 9));
  };
  run(body(path("direct")));
}

// A batch of `n` requests over two files: writes of fresh data into the even blocks and
// reads of known data from the odd blocks, alternating, then everything is checked.
Task<void> mixed_batch(std::string p1, std::string p2, std::size_t n, bool direct) {
  const int extra = direct ? O_DIRECT : 0;
  auto f1 = File::open(p1, O_RDWR | O_CREAT | O_TRUNC | extra);
  auto f2 = File::open(p2, O_RDWR | O_CREAT | O_TRUNC | extra);
  CO_ASSERT_TRUE(f1 && f2);
  const std::size_t bs = 4096;
  const std::size_t blocks = 2 * n;
  File* files[2] = {&*f1, &*f2};
  // Known content everywhere (seed 1).
  for (File* f : files) {
    AlignedBuffer init(blocks * bs);
    fill(init.span(), 0, 1);
    CO_ASSERT_TRUE(co_await write_fully(*f, init.span(), 0));
  }
  std::vector<AlignedBuffer> bufs;
  bufs.reserve(n);
  FileBatch batch(n);
  EXPECT_EQ(batch.capacity(), n);
  for (std::size_t i = 0; i < n; ++i) {
    File& f = *files[i % 2];
    bufs.emplace_back(bs);
    if (i % 2 == 0) {
      const std::uint64_t off = (2 * i) * bs;  // even block: write seed 2
      fill(bufs.back().span(), off, 2);
      EXPECT_EQ(batch.write_at(f, bufs.back().span(), off), i);
    } else {
      EXPECT_EQ(batch.read_at(f, bufs.back().span(), (2 * i + 1) * bs), i);
    }
  }
  EXPECT_TRUE(batch.full());
  EXPECT_THROW(batch.read_at(*f1, bufs[0].span(), 0), std::length_error);
  auto all = co_await batch.submit();
  EXPECT_TRUE(all) << all.error().message();
  for (std::size_t i = 0; i < n; ++i) {
    auto r = batch.result(i);
    CO_ASSERT_TRUE(r);
    EXPECT_EQ(*r, bs) << "request " << i;
    if (i % 2 == 1) {
      EXPECT_TRUE(matches(bufs[i].span(), (2 * i + 1) * bs, 1)) << "request " << i;
    }
  }
  // The writes landed, and nothing else changed.
  for (std::size_t i = 0; i < n; ++i) {
    AlignedBuffer back(bs);
    const std::uint64_t off = (2 * i) * bs;
    auto r = co_await files[i % 2]->read_at(back.span(), off);
    CO_ASSERT_TRUE(r && *r == bs);
    EXPECT_TRUE(matches(back.span(), off, i % 2 == 0 ? 2 : 1)) << "block " << 2 * i;
  }
  // Reuse: clear and submit again.
  batch.clear();
  EXPECT_TRUE(batch.empty());
  AlignedBuffer again(bs);
  batch.read_at(*f1, again.span(), bs);
  EXPECT_TRUE(co_await batch.submit());
  EXPECT_TRUE(matches(again.span(), bs, 1));
}

TEST_P(FileTest, BatchesOf1And4And256Buffered) {
  for (std::size_t n : {1, 4, 256}) run(mixed_batch(path("b1"), path("b2"), n, false));
}

TEST_P(FileTest, BatchesOf1And4And256Direct) {
  SKIP_WITHOUT_DIRECT();
  for (std::size_t n : {1, 4, 256}) run(mixed_batch(path("b1"), path("b2"), n, true));
}

TEST_P(FileTest, DirectBatchLargerThanTheAioContext) {
  SKIP_WITHOUT_DIRECT();
  // 600 > the libaio context's initial 256 slots: the rest wait for slots (then grow it).
  run(mixed_batch(path("b1"), path("b2"), 600, true));
  run(mixed_batch(path("b1"), path("b2"), 600, true));
}

TEST_P(FileTest, EmptyBatchAndBatchWithOnlyBadRequests) {
  SKIP_WITHOUT_DIRECT();
  auto body = [](std::string p) -> Task<void> {
    FileBatch empty(4);
    EXPECT_TRUE(co_await empty.submit());
    auto f = File::open(p, O_RDWR | O_CREAT | O_DIRECT);
    CO_ASSERT_TRUE(f);
    AlignedBuffer buf(8192);
    FileBatch batch(2);
    batch.read_at(*f, buf.span(1, 4096), 0);
    batch.write_at(*f, buf.span(0, 4096), 100);
    EXPECT_EQ(batch.result(0).error(), Error::misaligned_buffer);  // recorded when queued
    auto r = co_await batch.submit();
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), Error::misaligned_buffer);
    EXPECT_EQ(batch.result(1).error(), Error::misaligned_offset);
  };
  run(body(path("bad")));
}

TEST_P(FileTest, ConcurrentOpsOnOneFileFromManyCoroutines) {
  for (bool direct : {false, true}) {
    if (direct && !direct_unsupported().empty()) continue;
    auto body = [](std::string p, bool direct) -> Task<void> {
      auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0));
      CO_ASSERT_TRUE(f);
      constexpr int kWorkers = 64, kRounds = 8;
      constexpr std::size_t bs = 4096;
      auto worker = [](File* f, int id) -> Task<int> {
        int errors = 0;
        AlignedBuffer out(bs), in(bs);
        for (int r = 0; r < kRounds; ++r) {
          const std::uint64_t off = (static_cast<std::uint64_t>(r) * kWorkers + id) * bs;
          fill(out.span(), off, static_cast<unsigned>(r + 1));
          auto w = co_await f->write_at(out.span(), off);
          if (!w || *w != bs) ++errors;
          auto rd = co_await f->read_at(in.span(), off);
          if (!rd || *rd != bs || !matches(in.span(), off, static_cast<unsigned>(r + 1))) ++errors;
        }
        co_return errors;
      };
      std::vector<Task<int>> tasks;
      for (int i = 0; i < kWorkers; ++i) tasks.push_back(worker(&*f, i));
      auto results = co_await when_all(std::move(tasks));
      int errors = 0;
      for (int e : results) errors += e;
      EXPECT_EQ(errors, 0);
      auto size = f->size();
      EXPECT_TRUE(size && *size == kRounds * kWorkers * bs);
    };
    run(body(path(direct ? "conc_direct" : "conc"), direct));
  }
}

TEST_P(FileTest, ShortReadsAtEndOfFile) {
  auto body = [](std::string p) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    std::vector<std::byte> data(1000);
    fill(data, 0, 5);
    CO_ASSERT_TRUE(co_await write_fully(*f, data, 0));
    std::vector<std::byte> buf(4096);
    auto a = co_await f->read_at(buf, 0);
    CO_ASSERT_TRUE(a);
    EXPECT_EQ(*a, 1000u);
    EXPECT_TRUE(matches(std::span(buf).first(1000), 0, 5));
    auto b = co_await f->read_at(buf, 900);
    EXPECT_TRUE(b && *b == 100);
    auto c = co_await f->read_at(buf, 1000);
    EXPECT_TRUE(c && *c == 0);
    auto d = co_await f->read_at(buf, 1ull << 33);
    EXPECT_TRUE(d && *d == 0);
    iovec iov[2] = {{buf.data(), 600}, {buf.data() + 600, 600}};
    auto e = co_await f->readv_at(iov, 0);
    EXPECT_TRUE(e && *e == 1000);
  };
  run(body(path("eof")));
}

TEST_P(FileTest, DirectShortReadAtEndOfFile) {
  SKIP_WITHOUT_DIRECT();
  auto body = [](std::string p) -> Task<void> {
    {
      auto w = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
      CO_ASSERT_TRUE(w);
      std::vector<std::byte> data(4096 + 100);
      fill(data, 0, 6);
      CO_ASSERT_TRUE(co_await write_fully(*w, data, 0));
      EXPECT_TRUE(co_await w->fsync());
    }
    auto f = File::open(p, O_RDONLY | O_DIRECT);
    CO_ASSERT_TRUE(f);
    AlignedBuffer buf(3 * 4096);
    auto n = co_await f->read_at(buf.span(), 0);
    CO_ASSERT_TRUE(n);
    EXPECT_EQ(*n, 4096u + 100u);
    EXPECT_TRUE(matches(buf.span(0, 4196), 0, 6));
    auto past = co_await f->read_at(buf.span(), 8192);
    EXPECT_TRUE(past && *past == 0);
  };
  run(body(path("direct_eof")));
}

TEST_P(FileTest, DirectAlignmentErrorsAreCaughtBeforeSubmission) {
  SKIP_WITHOUT_DIRECT();
  auto body = [](std::string p) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT);
    CO_ASSERT_TRUE(f);
    const std::size_t bs = f->logical_block_size();
    AlignedBuffer buf(4 * bs, bs);
    // Each rule alone, for reads and writes.
    auto r1 = co_await f->read_at(buf.span(1, bs), 0);
    EXPECT_EQ(r1.error(), Error::misaligned_buffer);
    auto r2 = co_await f->write_at(buf.span(0, bs), bs / 2);
    EXPECT_EQ(r2.error(), Error::misaligned_offset);
    auto r3 = co_await f->write_at(buf.span(0, bs + 1), 0);
    EXPECT_EQ(r3.error(), Error::misaligned_length);
    auto r4 = co_await f->read_at(buf.span(0, bs / 2), bs);
    EXPECT_EQ(r4.error(), Error::misaligned_length);
    // The buffer is reported first when several are wrong.
    auto r5 = co_await f->read_at(buf.span(3, 100), 7);
    EXPECT_EQ(r5.error(), Error::misaligned_buffer);
    iovec bad[2] = {{buf.data(), bs}, {buf.data() + bs, 10}};
    auto r6 = co_await f->writev_at(bad, 0);
    EXPECT_EQ(r6.error(), Error::misaligned_length);
    EXPECT_NE(r6.error(), std::errc::invalid_argument);
    EXPECT_EQ(r6.error().category(), galay_category());
    // Nothing reached the file.
    auto size = f->size();
    EXPECT_TRUE(size && *size == 0);
    // Aligned requests work.
    auto ok = co_await f->write_at(buf.span(0, bs), bs);
    EXPECT_TRUE(ok && *ok == bs);
    // Buffered files have no such rule.
    auto g = File::open(p + ".buffered", O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(g);
    auto any = co_await g->write_at(buf.span(3, 5), 7);
    EXPECT_TRUE(any && *any == 5);
  };
  run(body(path("align")));
}

TEST_P(FileTest, WritingAReadOnlyFileIsEBADF) {
  for (bool direct : {false, true}) {
    if (direct && !direct_unsupported().empty()) continue;
    auto body = [](std::string p, bool direct) -> Task<void> {
      {
        auto c = File::open(p, O_WRONLY | O_CREAT | O_TRUNC);
        CO_ASSERT_TRUE(c);
      }
      auto f = File::open(p, O_RDONLY | (direct ? O_DIRECT : 0));
      CO_ASSERT_TRUE(f);
      AlignedBuffer buf(4096);
      auto w = co_await f->write_at(buf.span(), 0);
      CO_ASSERT_FALSE(w);
      EXPECT_EQ(w.error(), std::errc::bad_file_descriptor) << w.error().message();
      FileBatch batch(2);
      batch.write_at(*f, buf.span(), 0);
      batch.read_at(*f, buf.span(), 0);
      auto r = co_await batch.submit();
      EXPECT_EQ(r.error(), std::errc::bad_file_descriptor);
      EXPECT_EQ(batch.result(0).error(), std::errc::bad_file_descriptor);
      EXPECT_TRUE(batch.result(1) && *batch.result(1) == 0);  // empty file: EOF
    };
    run(body(path("ro"), direct));
  }
}

TEST_P(FileTest, OperationsOnClosedOrInvalidFiles) {
  auto body = [](std::string p) -> Task<void> {
    std::byte b[16];
    File empty;
    EXPECT_FALSE(empty.is_open());
    EXPECT_EQ((co_await empty.read_at(b, 16, 0)).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ((co_await empty.write_at(b, 16, 0)).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ((co_await empty.fsync()).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ((co_await empty.fdatasync()).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ((co_await empty.fallocate(0, 0, 4096)).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ((co_await empty.close()).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ(empty.size().error(), std::errc::bad_file_descriptor);
    FileBatch batch(1);
    batch.read_at(empty, std::span<std::byte>(b), 0);
    EXPECT_EQ((co_await batch.submit()).error(), std::errc::bad_file_descriptor);

    auto f = File::open(p, O_RDWR | O_CREAT);
    CO_ASSERT_TRUE(f);
    EXPECT_TRUE(co_await f->close());
    EXPECT_FALSE(f->is_open());
    EXPECT_EQ((co_await f->read_at(b, 16, 0)).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ((co_await f->close()).error(), std::errc::bad_file_descriptor);

    EXPECT_EQ(File::adopt(-1).error(), std::errc::bad_file_descriptor);
    EXPECT_EQ(File::adopt(1 << 20).error(), std::errc::bad_file_descriptor);
    int raw = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
    auto adopted = File::adopt(raw);
    CO_ASSERT_TRUE(adopted);
    auto n = co_await adopted->write_at("xyz", 3, 0);
    EXPECT_TRUE(n && *n == 3);
    File moved = std::move(*adopted);
    EXPECT_FALSE(adopted->is_open());
    auto m = co_await moved.read_at(b, 16, 0);
    EXPECT_TRUE(m && *m == 3);
  };
  run(body(path("closed")));
}

TEST_P(FileTest, OpenErrors) {
  auto body = [](std::string dir) -> Task<void> {
    auto missing = File::open(dir + "/no/such/file", O_RDONLY);
    CO_ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
    auto missing2 = File::open(dir + "/absent", O_RDWR);
    EXPECT_EQ(missing2.error(), std::errc::no_such_file_or_directory);
    // A directory: open(2) refuses it for writing (EISDIR); read-only it opens on Linux and
    // the read is what fails, with EISDIR.
    auto w = File::open(dir, O_RDWR);
    CO_ASSERT_FALSE(w);
    EXPECT_EQ(w.error(), std::errc::is_a_directory);
    auto r = File::open(dir, O_RDONLY);
    CO_ASSERT_TRUE(r);
    std::byte b[16];
    auto n = co_await r->read_at(b, sizeof(b), 0);
    CO_ASSERT_FALSE(n);
    EXPECT_EQ(n.error(), std::errc::is_a_directory);
  };
  run(body(dir_));
}

TEST_P(FileTest, FsyncFdatasyncFallocate) {
  auto body = [](std::string p) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    std::vector<std::byte> data(10000);
    fill(data, 0, 8);
    CO_ASSERT_TRUE(co_await write_fully(*f, data, 0));
    EXPECT_TRUE(co_await f->fsync());
    EXPECT_TRUE(co_await f->fdatasync());
    EXPECT_TRUE(co_await f->fsync(5s));
    auto a = co_await f->fallocate(0, 0, 1 << 20);
    CO_ASSERT_TRUE(a);
    EXPECT_EQ(*f->size(), 1u << 20);
    auto k = co_await f->fallocate(FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20);
    EXPECT_TRUE(k) << k.error().message();
    EXPECT_EQ(*f->size(), 1u << 20);
    auto bad = co_await f->fallocate(0, 0, 0);  // zero length: EINVAL from the kernel
    EXPECT_EQ(bad.error(), std::errc::invalid_argument);
    std::vector<std::byte> back(10000);
    auto n = co_await f->read_at(back, 0);
    EXPECT_TRUE(n && *n == 10000 && matches(back, 0, 8));
  };
  run(body(path("sync")));
}

// After an op came back, the kernel or a worker must no longer write into its buffer: the
// memory is handed to a new owner, stamped, and checked a little later.
Task<int> late_writes_into(std::vector<std::vector<std::byte>>& freed) {
  int bad = 0;
  std::vector<std::vector<std::byte>> reused;
  for (auto& v : freed) {
    std::size_t n = v.size();
    v = {};
    reused.emplace_back(n, std::byte{0x5a});
  }
  co_await sleep_for(50ms);
  for (auto& v : reused)
    for (std::byte b : v) bad += b != std::byte{0x5a};
  co_return bad;
}

TEST_P(FileTest, TimeoutAndCancelWhileInFlightNeverLeaveTheBufferInUse) {
  for (bool direct : {false, true}) {
    if (direct && !direct_unsupported().empty()) continue;
    auto body = [](std::string p, bool direct) -> Task<void> {
      constexpr std::size_t kChunk = 256 << 10;
      constexpr int kOps = 64;
      {
        auto w = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
        CO_ASSERT_TRUE(w);
        std::vector<std::byte> data(kChunk);
        for (int i = 0; i < kOps; ++i) {
          fill(data, std::uint64_t(i) * kChunk, 4);
          CO_ASSERT_TRUE(co_await write_fully(*w, data, std::uint64_t(i) * kChunk));
        }
      }
      auto f = File::open(p, O_RDONLY | (direct ? O_DIRECT : 0));
      CO_ASSERT_TRUE(f);
      int timed_out = 0, completed = 0;
      // Timeouts from "already expired" to "about as long as the read".
      for (int round = 0; round < 4; ++round) {
        auto one = [](File* f, int i, int round, int* to, int* done) -> Task<int> {
          AlignedBuffer buf(kChunk);
          auto n = co_await f->read_at(buf.span(), std::uint64_t(i) * kChunk, std::chrono::microseconds(round * 200));
          if (n) {
            ++*done;
            co_return (*n == kChunk && matches(buf.span(), std::uint64_t(i) * kChunk, 4)) ? 0 : 1;
          }
          if (n.error() == std::errc::timed_out) {
            ++*to;
            co_return 0;
          }
          ADD_FAILURE() << "unexpected error " << n.error().message();
          co_return 1;
        };
        std::vector<Task<int>> tasks;
        for (int i = 0; i < kOps; ++i) tasks.push_back(one(&*f, i, round, &timed_out, &completed));
        auto errs = co_await when_all(std::move(tasks));
        for (int e : errs) EXPECT_EQ(e, 0);
      }
      EXPECT_EQ(timed_out + completed, 4 * kOps);

      // A batch with a deadline, and a cancelled task: data or the reason, never a buffer
      // still in use once the await returns.
      // Plain vectors (so the memory can be handed to a new owner afterwards), read through
      // 4 KiB-aligned windows for O_DIRECT.
      std::vector<std::vector<std::byte>> bufs;
      for (int i = 0; i < kOps; ++i) bufs.emplace_back(kChunk + 4096);
      auto window = [&](int i) {
        auto* base = bufs[i].data();
        auto aligned =
            reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(base) + 4095) & ~std::uintptr_t(4095));
        return std::span<std::byte>(aligned, kChunk);
      };
      FileBatch batch(kOps);
      for (int i = 0; i < kOps; ++i) batch.read_at(*f, window(i), std::uint64_t(i) * kChunk);
      auto r = co_await batch.submit(std::chrono::microseconds(100));
      for (int i = 0; i < kOps; ++i) {
        auto ri = batch.result(i);
        if (ri) {
          EXPECT_EQ(*ri, kChunk);
        } else {
          EXPECT_EQ(ri.error(), std::errc::timed_out) << ri.error().message();
        }
      }
      (void)r;
      EXPECT_EQ(co_await late_writes_into(bufs), 0);

      auto victim = spawn([](File* f) -> Task<std::error_code> {
        AlignedBuffer buf(8 * kChunk);
        auto n = co_await f->read_at(buf.span(), 0);
        co_return n ? std::error_code() : n.error();
      }(&*f));
      co_await yield();
      victim.cancel();
      auto ec = co_await victim;
      EXPECT_TRUE(!ec || ec == std::errc::operation_canceled) << ec.message();
    };
    run(body(path(direct ? "cancel_direct" : "cancel"), direct));
  }
}

TEST_P(FileTest, CloseWithOpsPending) {
  auto body = [](std::string p) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    CO_ASSERT_TRUE(co_await f->fallocate(0, 0, 16 << 20));
    std::vector<JoinHandle<int>> readers;
    for (int i = 0; i < 32; ++i) {
      readers.push_back(spawn([](File* f, int i) -> Task<int> {
        AlignedBuffer buf(1 << 19);
        auto n = co_await f->read_at(buf.span(), std::uint64_t(i) << 19);
        if (n) co_return 0;
        co_return n.error() == std::errc::operation_canceled || n.error() == std::errc::bad_file_descriptor ? 0 : 1;
      }(&*f, i)));
    }
    co_await yield();
    EXPECT_TRUE(co_await f->close());
    for (auto& h : readers) EXPECT_EQ(co_await h, 0);
  };
  run(body(path("close_pending")));
}

TEST_P(FileTest, SchedulerDestructionWithFileOpsPending) {
  const bool direct = direct_unsupported().empty();
  const int fds_before = open_fd_count();
  LiveCounter::live = 0;
  {
    Scheduler::Options opts;
    opts.backend = GetParam();
    auto s = Scheduler::create(opts);
    ASSERT_TRUE(s);
    std::string p = path("shutdown");
    {
      int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::ftruncate(fd, 64 << 20), 0);
      ::close(fd);
    }
    auto start = [](std::string p, bool direct) -> Task<void> {
      for (int i = 0; i < 8; ++i) {
        spawn([](std::string p, bool direct, int i) -> Task<void> {
          LiveCounter alive;
          auto f = File::open(p, O_RDWR | (direct && i % 2 ? O_DIRECT : 0));
          if (!f) co_return;
          AlignedBuffer buf(4 << 20);
          if (i % 4 == 3) {
            FileBatch batch(8);
            for (int k = 0; k < 8; ++k)
              batch.read_at(*f, buf.span(std::size_t(k) << 19, 1 << 19), std::uint64_t(k) << 19);
            (void)co_await batch.submit();
          } else {
            for (;;) {
              auto n = co_await f->write_at(buf.span(), std::uint64_t(i) << 22);
              if (!n) co_return;
            }
          }
        }(p, direct, i))
            .detach();
      }
      co_await sleep_for(2ms);
    };
    s->get()->block_on(start(p, direct));
    EXPECT_GT(LiveCounter::live, 0);
    // Destroyed with ops in the kernel and on the pool: must drain, not hang or leak.
  }
  EXPECT_EQ(LiveCounter::live, 0);
  EXPECT_EQ(open_fd_count(), fds_before);
}

GALAY_INSTANTIATE_ALL_BACKENDS(FileTest);

TEST(AlignedBufferTest, SpanIsClampedToTheBuffer) {
  AlignedBuffer buf(100, 512);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buf.data()) % 512, 0u);
  EXPECT_EQ(buf.span(10, 20).size(), 20u);
  EXPECT_EQ(buf.span(90, 20).size(), 10u);  // past the end: clamped
  EXPECT_EQ(buf.span(200, 5).size(), 0u);   // offset past the end: empty, not UB
  EXPECT_EQ(buf.span(200, 5).data(), buf.data() + 100);
  const AlignedBuffer& cbuf = buf;
  EXPECT_EQ(cbuf.span(95, 1000).size(), 5u);
}

}  // namespace
}  // namespace galay::test
