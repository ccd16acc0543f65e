// Registered buffers and registered files on every backend.
// RegisteredBuffers (io/registered_buffers.h): file reads and writes through a registered
// region return the file's bytes, singly and in a FileBatch, with or without O_DIRECT; on
// io_uring they are READ_FIXED/WRITE_FIXED (shown by the kernel writing into the pages it
// pinned at registration), elsewhere ordinary I/O.
// FdOwner::register_file (io/fd_owner.h): ops on a registered file or socket behave as
// before; on io_uring they go by table slot (shown by swapping the file under the number
// with dup2), and closing drops the slot (the peer sees EOF, a reused number reaches the
// new file).
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statfs.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

constexpr long kTmpfs = 0x01021994;

std::byte pattern(std::size_t i, unsigned seed) { return static_cast<std::byte>((i * 31u + seed * 17u) & 0xff); }
void fill(std::span<std::byte> s, unsigned seed) {
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = pattern(i, seed);
}
bool matches(std::span<const std::byte> s, unsigned seed) {
  for (std::size_t i = 0; i < s.size(); ++i)
    if (s[i] != pattern(i, seed)) return false;
  return true;
}

class RegisteredIoTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    std::string base = "/tmp";  // tmpfs has no O_DIRECT: then the build tree
    struct statfs fs {};
    if (::statfs(base.c_str(), &fs) != 0 || fs.f_type == kTmpfs) base = std::filesystem::current_path().string();
    dir_ = tmp_.create("galay_regbuf_test", base);
    ASSERT_FALSE(dir_.empty()) << tmp_.error();
  }
  std::string path(const char* name) const { return dir_ + "/" + name; }
  // True where this backend registers the region (io_uring, with or without SQPOLL).
  bool registers() const { return GetParam().kind == BackendKind::io_uring; }
  // O_DIRECT if the test directory's file system has it, else 0.
  int direct_flag() const {
    const std::string p = path(".probe");
    const int fd = ::open(p.c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
    if (fd < 0) return 0;
    ::close(fd);
    ::unlink(p.c_str());
    return O_DIRECT;
  }

  TempDir tmp_;  // removed after TearDown, once the scheduler is gone
  std::string dir_;
};

TEST_P(RegisteredIoTest, ReadsAndWritesThroughTheRegionReturnTheFileBytes) {
  const bool expect_registered = registers();
  for (int extra : {0, direct_flag()}) {
    run([](std::string p, int flags, bool expect) -> Task<void> {
      auto region = RegisteredBuffers::create(256 * 1024);
      CO_ASSERT_TRUE(region);
      RegisteredBuffers& r = **region;
      EXPECT_EQ(r.registered(), expect) << r.describe();
      EXPECT_NE(r.describe().find(expect ? "registered (io_uring" : "not registered ("), std::string::npos)
          << r.describe();
      auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC | flags);
      EXPECT_TRUE(f) << f.error().message();
      if (!(f)) co_return;
      // Out of the region's first 64 KiB, back into its last 64 KiB.
      auto out = r.bytes().subspan(0, 65536);
      auto in = r.bytes().subspan(r.bytes().size() - 65536);
      fill(out, 3);
      auto w = co_await f->write_at(out, 8192);
      EXPECT_TRUE(w) << w.error().message();
      if (!(w)) co_return;
      EXPECT_EQ(*w, out.size());
      auto n = co_await f->read_at(in, 8192);
      EXPECT_TRUE(n) << n.error().message();
      if (!(n)) co_return;
      EXPECT_EQ(*n, in.size());
      EXPECT_TRUE(matches(in, 3));
      // A short read at the end of the file, and a read beyond it.
      auto tail = co_await f->read_at(in, 8192 + 65536 - 4096);
      CO_ASSERT_TRUE(tail);
      EXPECT_EQ(*tail, 4096u);
      auto past = co_await f->read_at(in, 1 << 20);
      CO_ASSERT_TRUE(past);
      EXPECT_EQ(*past, 0u);
      // A buffer outside the region works the ordinary way beside it.
      AlignedBuffer heap(4096);
      auto h = co_await f->read_at(heap.span(), 8192);
      CO_ASSERT_TRUE(h && *h == 4096u);
      EXPECT_TRUE(matches(heap.span(), 3));
      (void)co_await f->close();
    }(path("rw"), extra, expect_registered));
  }
}

TEST_P(RegisteredIoTest, ABatchInTheRegionReadsAndWritesEveryBlock) {
  const int flags = direct_flag();
  run([](std::string p, int extra) -> Task<void> {
    constexpr std::size_t bs = 4096, n = 32;
    auto region = RegisteredBuffers::create(2 * n * bs);
    CO_ASSERT_TRUE(region);
    auto bytes = (*region)->bytes();
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC | extra);
    CO_ASSERT_TRUE(f);
    FileBatch writes(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto b = bytes.subspan(i * bs, bs);
      fill(b, static_cast<unsigned>(i));
      writes.write_at(*f, b, i * bs);
    }
    auto wr = co_await writes.submit();
    EXPECT_TRUE(wr) << wr.error().message();
    if (!(wr)) co_return;
    FileBatch reads(n);
    for (std::size_t i = 0; i < n; ++i) reads.read_at(*f, bytes.subspan((n + i) * bs, bs), i * bs);
    auto rd = co_await reads.submit();
    EXPECT_TRUE(rd) << rd.error().message();
    if (!(rd)) co_return;
    for (std::size_t i = 0; i < n; ++i) {
      auto r = reads.result(i);
      CO_ASSERT_TRUE(r);
      EXPECT_EQ(*r, bs);
      EXPECT_TRUE(matches(bytes.subspan((n + i) * bs, bs), static_cast<unsigned>(i))) << "block " << i;
    }
    (void)co_await f->close();
  }(path("batch"), flags));
}

// The proof that io_uring reads into the registered pages (READ_FIXED) and not through
// the address: after the region's address range is given fresh pages, a fixed read still
// lands in the pages pinned at registration, so the new pages stay zero; an ordinary read
// (every other backend) fills the new pages.
TEST_P(RegisteredIoTest, OnIoUringReadsLandInThePagesPinnedAtRegistration) {
  const bool fixed = registers();
  run([](std::string p, bool expect_fixed) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    AlignedBuffer data(16384);
    fill(data.span(), 9);
    CO_ASSERT_TRUE(co_await f->write_at(data.span(), 0));
    auto region = RegisteredBuffers::create(16384, {.huge_pages = false});
    CO_ASSERT_TRUE(region);
    auto bytes = (*region)->bytes();
    void* again =
        ::mmap(bytes.data(), bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    EXPECT_TRUE(again == bytes.data()) << std::strerror(errno);
    if (!(again == bytes.data())) co_return;
    auto n = co_await f->read_at(bytes, 0);
    EXPECT_TRUE(n) << n.error().message();
    if (!(n)) co_return;
    EXPECT_EQ(*n, bytes.size());
    bool zero = true;
    for (std::byte b : bytes) zero = zero && b == std::byte{0};
    if (expect_fixed) {
      EXPECT_TRUE(zero) << "the read went through the address, not the registered pages";
    } else {
      EXPECT_TRUE(matches(bytes, 9));
    }
    (void)co_await f->close();
  }(path("pinned"), fixed));
}

TEST_P(RegisteredIoTest, ASecondRegionWorksUnregisteredAndTheTableIsFreeAfterTheFirstGoes) {
  const bool registering = registers();
  run([](std::string p, bool reg) -> Task<void> {
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(f);
    auto first = RegisteredBuffers::create(8192);
    auto second = RegisteredBuffers::create(8192);
    CO_ASSERT_TRUE(first && second);
    EXPECT_EQ((*first)->registered(), reg);
    EXPECT_FALSE((*second)->registered());
    if (reg) {
      EXPECT_NE((*second)->describe().find("already"), std::string::npos) << (*second)->describe();
    }
    auto b = (*second)->bytes();
    fill(b, 5);
    CO_ASSERT_TRUE(co_await f->write_at(b, 0));
    auto c = (*first)->bytes();
    auto n = co_await f->read_at(c, 0);
    CO_ASSERT_TRUE(n && *n == c.size());
    EXPECT_TRUE(matches(c, 5));
    first->reset();  // unregisters
    auto third = RegisteredBuffers::create(8192);
    CO_ASSERT_TRUE(third);
    EXPECT_EQ((*third)->registered(), reg) << (*third)->describe();
    auto t = co_await f->read_at((*third)->bytes(), 0);
    CO_ASSERT_TRUE(t && *t == 8192u);
    EXPECT_TRUE(matches((*third)->bytes(), 5));
    (void)co_await f->close();
  }(path("second"), registering));
}

TEST_P(RegisteredIoTest, BadArgumentsGetClearErrors) {
  const int direct = direct_flag();
  run([](std::string p, int extra) -> Task<void> {
    auto zero = RegisteredBuffers::create(0);
    CO_ASSERT_FALSE(zero);
    EXPECT_EQ(zero.error(), std::errc::invalid_argument);
    auto huge = RegisteredBuffers::create(std::size_t(1) << 62);
    CO_ASSERT_FALSE(huge);
    EXPECT_EQ(huge.error(), std::errc::not_enough_memory);
    auto region = RegisteredBuffers::create(65536);
    CO_ASSERT_TRUE(region);
    if (extra == 0) co_return;
    // O_DIRECT's alignment rule still holds inside the region: refused before submission.
    auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC | extra);
    CO_ASSERT_TRUE(f);
    auto odd = co_await f->read_at((*region)->bytes().subspan(1, 4096), 0);
    CO_ASSERT_FALSE(odd);
    EXPECT_EQ(odd.error(), Error::misaligned_buffer);
    (void)co_await f->close();
  }(path("bad"), direct));
}

// ---- registered files ----

TEST_P(RegisteredIoTest, ARegisteredFileWorksAsBefore) {
  const bool reg = registers();
  for (int extra : {0, direct_flag()}) {
    run([](std::string p, int flags, bool expect) -> Task<void> {
      auto f = File::open(p, O_RDWR | O_CREAT | O_TRUNC | flags);
      CO_ASSERT_TRUE(f);
      auto r = f->register_file();
      CO_ASSERT_TRUE(r);
      EXPECT_EQ(*r, expect);
      auto again = f->register_file();  // a second time: already registered
      CO_ASSERT_TRUE(again);
      EXPECT_EQ(*again, expect);
      AlignedBuffer out(65536), in(65536);
      fill(out.span(), 4);
      auto w = co_await f->write_at(out.span(), 4096);
      CO_ASSERT_TRUE(w && *w == out.size());
      EXPECT_TRUE(co_await f->fdatasync());
      auto n = co_await f->read_at(in.span(), 4096);
      CO_ASSERT_TRUE(n && *n == in.size());
      EXPECT_TRUE(matches(in.span(), 4));
      FileBatch batch(4);
      std::vector<AlignedBuffer> bufs;
      for (int i = 0; i < 4; ++i) bufs.emplace_back(4096);
      for (std::size_t i = 0; i < 4; ++i) batch.read_at(*f, bufs[i].span(), 4096 + i * 4096);
      EXPECT_TRUE(co_await batch.submit());
      for (std::size_t i = 0; i < 4; ++i)
        EXPECT_TRUE(std::memcmp(bufs[i].span().data(), in.span().data() + i * 4096, 4096) == 0) << i;
      // With a registered buffer as well: READ_FIXED on a registered file.
      auto region = RegisteredBuffers::create(65536);
      CO_ASSERT_TRUE(region);
      auto m = co_await f->read_at((*region)->bytes(), 4096);
      CO_ASSERT_TRUE(m && *m == 65536u);
      EXPECT_TRUE(matches((*region)->bytes(), 4));
      EXPECT_TRUE(co_await f->close());
    }(path("regfile"), extra, reg));
  }
}

// dup2 puts another file under the registered number behind the library's back: on
// io_uring the ops still reach the registered file (they go by slot), elsewhere the number.
TEST_P(RegisteredIoTest, OnIoUringOpsGoToTheRegisteredFileNotTheNumber) {
  const bool reg = registers();
  run([](std::string pa, std::string pb, bool expect) -> Task<void> {
    auto a = File::open(pa, O_RDWR | O_CREAT | O_TRUNC);
    auto b = File::open(pb, O_RDWR | O_CREAT | O_TRUNC);
    CO_ASSERT_TRUE(a && b);
    CO_ASSERT_TRUE(co_await a->write_at("aaaa", 4, 0));
    CO_ASSERT_TRUE(co_await b->write_at("bbbb", 4, 0));
    auto r = a->register_file();
    CO_ASSERT_TRUE(r && *r == expect);
    CO_ASSERT_TRUE(::dup2(b->native_handle(), a->native_handle()) == a->native_handle());
    char got[4] = {};
    auto n = co_await a->read_at(got, sizeof got, 0);
    CO_ASSERT_TRUE(n && *n == 4u);
    EXPECT_EQ(std::string(got, 4), expect ? "aaaa" : "bbbb");
  }(path("a"), path("b"), reg));
}

// Contents written with plain syscalls, so that only the reads go through the library.
void write_file(const std::string& p, const char* text) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, text, std::strlen(text)), static_cast<ssize_t>(std::strlen(text)));
  ::close(fd);
}

TEST_P(RegisteredIoTest, AReusedNumberReachesTheNewFileNotTheOldSlot) {
  write_file(path("a"), "aaaa");
  write_file(path("b"), "bbbb");
  run([](std::string pa, std::string pb) -> Task<void> {
    char got[4] = {};
    for (bool by_close_op : {true, false}) {
      int number = -1;
      {
        auto a = File::open(pa, O_RDONLY);
        CO_ASSERT_TRUE(a && a->register_file());
        number = a->native_handle();
        auto n = co_await a->read_at(got, sizeof got, 0);
        CO_ASSERT_TRUE(n && *n == 4u);
        if (by_close_op) {
          EXPECT_TRUE(co_await a->close());
        }  // else the destructor closes it
      }
      auto b = File::open(pb, O_RDONLY);
      CO_ASSERT_TRUE(b);
      // The lowest free number: the same one (under chaos mode a decoy may take it, and
      // itself checks that nothing uses the number).
      if (!chaos::enabled()) {
        EXPECT_EQ(b->native_handle(), number) << "the test wants the fd number reused";
      }
      auto n = co_await b->read_at(got, sizeof got, 0);
      CO_ASSERT_TRUE(n && *n == 4u);
      EXPECT_EQ(std::string(got, 4), "bbbb") << (by_close_op ? "after close()" : "after the destructor");
    }
  }(path("a"), path("b")));
}

// The table holds a reference to the socket: closing must drop it, or the peer would never
// see the end of the stream. A receive pending at the close ends with operation_canceled.
TEST_P(RegisteredIoTest, ClosingARegisteredSocketEndsItsStreamAndItsPendingReceive) {
  run([]() -> Task<void> {
    auto pair = co_await loopback_tcp_pair();
    TcpSocket& mine = pair.first;
    TcpSocket& peer = pair.second;
    CO_ASSERT_TRUE(mine.register_file());
    CO_ASSERT_TRUE(co_await mine.send_all("ping", 4));
    char buf[8];
    auto got = co_await recv_exactly(peer, buf, 4);
    CO_ASSERT_TRUE(got && *got == 4u);
    auto pending = spawn([](TcpSocket* s) -> Task<std::error_code> {
      char b[8];
      auto r = co_await s->recv(b, sizeof b);
      co_return r ? std::error_code() : r.error();
    }(&mine));
    co_await sleep_for(10ms);
    EXPECT_TRUE(co_await mine.close());
    EXPECT_EQ(co_await pending, std::errc::operation_canceled);
    auto eof = co_await peer.recv(buf, sizeof buf, 2s);
    CO_ASSERT_TRUE(eof);
    EXPECT_EQ(*eof, 0u) << "the peer did not see the close";
  }());
}

TEST_P(RegisteredIoTest, RegisteringAnEmptyFileIsAnError) {
  run([]() -> Task<void> {
    File none;
    auto r = none.register_file();
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::bad_file_descriptor);
    co_return;
  }());
}

TEST(RegisteredIoNoScheduler, CreateWithoutASchedulerIsAnError) {
  auto r = RegisteredBuffers::create(4096);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Error::not_bound_to_scheduler);
}

GALAY_INSTANTIATE_ALL_BACKENDS(RegisteredIoTest);

}  // namespace
}  // namespace galay::test
