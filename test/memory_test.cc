// MappedMemory, the one allocation policy for buffer memory (common/mapped_memory.h):
// huge pages when reserved, ordinary pre-faulted pages otherwise, mlock on request, and a
// reason for every refused step. Then the pool built on it, on every backend.
//
// Huge pages must be reserved for some of these to run: .ci/run reserves a few in
// /proc/sys/vm/nr_hugepages; elsewhere they are skipped, with the reason.
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

// The KernelPageSize (kB) /proc/self/smaps gives the mapping holding `addr`, or -1.
long smaps_kernel_page_kb(const void* addr) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  bool inside = false;
  while (std::getline(in, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("KernelPageSize:", 0) == 0) return std::stol(line.substr(15));
  }
  return -1;
}

bool all_zero(std::span<const std::byte> s) {
  for (std::byte b : s)
    if (b != std::byte{0}) return false;
  return true;
}

TEST(MappedMemory, RejectsZeroSizeAndBadAlignment) {
  auto zero = MappedMemory::map(0);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error(), std::errc::invalid_argument);
  auto odd = MappedMemory::map(4096, {}, std::size_t{3} * 4096);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error(), std::errc::invalid_argument);
  auto huge = MappedMemory::map(std::size_t(1) << 63);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error(), std::errc::not_enough_memory);
}

TEST(MappedMemory, SmallRegionUsesOrdinaryPagesAndSaysWhy) {
  auto m = MappedMemory::map(10000);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_FALSE(m->huge_pages());
  EXPECT_EQ(m->page_size(), static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(m->size(), 10000u);
  EXPECT_EQ(m->mapped_size() % m->page_size(), 0u);
  EXPECT_GE(m->mapped_size(), 10000u);
  EXPECT_TRUE(m->populated());
  EXPECT_FALSE(m->locked());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m->data()) % m->page_size(), 0u);
  EXPECT_TRUE(all_zero(m->span()));
  if (MappedMemory::huge_page_size() != 0) {
    EXPECT_NE(m->describe().find("smaller than one"), std::string::npos) << m->describe();
  }
  EXPECT_NE(m->describe().find("populated"), std::string::npos) << m->describe();
  EXPECT_NE(m->describe().find("not locked (not asked)"), std::string::npos) << m->describe();
}

TEST(MappedMemory, HugePagesOffIsNotReportedAsARefusal) {
  auto m = MappedMemory::map(4u << 20, {.huge_pages = false, .populate = false});
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_FALSE(m->huge_pages());
  EXPECT_FALSE(m->populated());
  EXPECT_EQ(m->describe().find("huge pages:"), std::string::npos) << m->describe();
  EXPECT_NE(m->describe().find("not populated (not asked)"), std::string::npos) << m->describe();
}

TEST(MappedMemory, HonoursAlignmentAboveThePageSize) {
  for (std::size_t align : {std::size_t(64) << 10, std::size_t(1) << 20}) {
    auto m = MappedMemory::map(12345, {.huge_pages = false}, align);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m->data()) % align, 0u) << align;
    m->data()[12344] = std::byte{7};  // the whole requested size is usable
  }
}

TEST(MappedMemory, MoveTransfersTheMapping) {
  auto m = MappedMemory::map(8192);
  ASSERT_TRUE(m);
  std::byte* p = m->data();
  MappedMemory a = std::move(*m);
  EXPECT_TRUE(m->empty());  // NOLINT(bugprone-use-after-move): testing it
  EXPECT_EQ(a.data(), p);
  MappedMemory b;
  b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): testing it
  p[8191] = std::byte{1};
}

TEST(MappedMemory, HugePagesWhenReserved) {
  if (std::string why = no_free_huge_pages(2); !why.empty()) GTEST_SKIP() << why;
  const std::size_t huge = MappedMemory::huge_page_size();
  auto m = MappedMemory::map(huge + 1);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE(m->huge_pages()) << m->describe();
  EXPECT_EQ(m->page_size(), huge);
  EXPECT_EQ(m->mapped_size(), 2 * huge);
  EXPECT_EQ(smaps_kernel_page_kb(m->data()), static_cast<long>(huge / 1024)) << "smaps disagrees";
  EXPECT_TRUE(all_zero(m->span()));
  EXPECT_NE(m->describe().find("huge pages"), std::string::npos) << m->describe();
}

TEST(MappedMemory, FallsBackWhenTooFewHugePagesAreFree) {
  if (MappedMemory::huge_page_size() == 0) GTEST_SKIP() << "this system has no huge pages";
  std::ifstream overcommit("/proc/sys/vm/nr_overcommit_hugepages");
  long surplus = 0;
  overcommit >> surplus;
  if (surplus != 0) GTEST_SKIP() << "nr_overcommit_hugepages is " << surplus << ": the kernel would add pages";
  const long free = meminfo("HugePages_Free");
  if (free < 0 || free > 64) GTEST_SKIP() << "HugePages_Free is " << free << " (too many to ask for more)";
  const std::size_t size = MappedMemory::huge_page_size() * static_cast<std::size_t>(free + 1);
  auto m = MappedMemory::map(size);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_FALSE(m->huge_pages());
  EXPECT_EQ(smaps_kernel_page_kb(m->data()), ::sysconf(_SC_PAGESIZE) / 1024);
  EXPECT_NE(m->describe().find("none free"), std::string::npos) << m->describe();
  m->data()[size - 1] = std::byte{1};
}

TEST(MappedMemory, LocksWhenAsked) {
  auto m = MappedMemory::map(16384, {.lock = true});
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE(m->locked()) << m->describe();
  EXPECT_NE(m->describe().find(", locked"), std::string::npos) << m->describe();
}

// Drop CAP_IPC_LOCK from the calling thread's effective set (capabilities are per thread
// on Linux), so RLIMIT_MEMLOCK applies to it even when the test runs as root.
bool drop_ipc_lock_capability() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  return ::syscall(SYS_capset, &hdr, data) == 0;
}

TEST(MappedMemory, MlockRefusedUnderALowLimitFallsBackWithTheReason) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer runtime replaces mlock with a no-op that always succeeds";
#endif
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_MEMLOCK, &old), 0);
  rlimit low = old;
  low.rlim_cur = rlim_t{64} * 1024;
  if (old.rlim_max != RLIM_INFINITY && old.rlim_max < low.rlim_cur) low.rlim_cur = old.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_MEMLOCK, &low), 0) << std::strerror(errno);
  std::string described;
  bool locked = true, dropped = false;
  std::thread t([&] {
    dropped = drop_ipc_lock_capability();
    if (!dropped) return;
    auto m = MappedMemory::map(1u << 20, {.huge_pages = false, .lock = true});
    if (!m) {
      described = "map failed: " + m.error().message();
      return;
    }
    locked = m->locked();
    described = m->describe();
    m->data()[(1u << 20) - 1] = std::byte{1};  // the memory is still there, unlocked
  });
  t.join();
  ::setrlimit(RLIMIT_MEMLOCK, &old);
  ASSERT_TRUE(dropped) << "could not drop CAP_IPC_LOCK: " << std::strerror(errno);
  EXPECT_FALSE(locked) << described;
  EXPECT_NE(described.find("mlock refused"), std::string::npos) << described;
  EXPECT_NE(described.find("RLIMIT_MEMLOCK is 64 KiB"), std::string::npos) << described;
}

TEST(AlignedBufferMemory, HeapByDefaultMappedWithOptions) {
  AlignedBuffer heap(4096);
  EXPECT_EQ(heap.memory_description(), "heap");
  EXPECT_EQ(heap.mapping(), nullptr);
  AlignedBuffer mapped(20000, 8192, MemoryOptions{.huge_pages = false});
  ASSERT_NE(mapped.mapping(), nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(mapped.data()) % 8192, 0u);
  EXPECT_EQ(mapped.size(), 20000u);
  EXPECT_TRUE(all_zero(mapped.span()));
  EXPECT_NE(mapped.memory_description().find("populated"), std::string::npos);
  AlignedBuffer moved = std::move(mapped);
  EXPECT_EQ(mapped.data(), nullptr);  // NOLINT(bugprone-use-after-move): testing it
  EXPECT_NE(moved.mapping(), nullptr);
  moved[19999] = std::byte{1};
  moved = AlignedBuffer(64);  // the mapping goes, a heap buffer replaces it
  EXPECT_EQ(moved.memory_description(), "heap");
}

// ---- the pool on every backend ----

class PoolMemoryTest : public BackendTest {};

// Send `bytes` through a StreamReceiver on `pool` and check they arrive intact.
Task<void> echo_through(BufferPool& pool, std::size_t bytes) {
  auto [client, server] = co_await loopback_tcp_pair();
  StreamReceiver rx(server, pool);
  std::string sent(bytes, '\0');
  for (std::size_t i = 0; i < bytes; ++i) sent[i] = static_cast<char>('a' + i % 26);
  auto w = co_await client.send_all(sent);
  CO_ASSERT_TRUE(w);
  std::string got;
  while (got.size() < bytes) {
    auto c = co_await rx.recv(5s);
    CO_ASSERT_TRUE(c && !c->empty());
    got.append(reinterpret_cast<const char*>(c->data().data()), c->size());
  }
  EXPECT_EQ(got, sent);
}

TEST_P(PoolMemoryTest, SmallPoolUsesOrdinaryPagesAndStillReceives) {
  run([]() -> Task<void> {
    auto pool = BufferPool::create(64, 512);
    CO_ASSERT_TRUE(pool);
    EXPECT_FALSE((*pool)->memory().huge_pages());
    EXPECT_TRUE((*pool)->memory().populated());
    EXPECT_FALSE((*pool)->memory().describe().empty());
    co_await echo_through(**pool, 100000);
  }());
}

TEST_P(PoolMemoryTest, PoolOnHugePagesReceives) {
  if (std::string why = no_free_huge_pages(2); !why.empty()) GTEST_SKIP() << why;
  run([]() -> Task<void> {
    auto pool = BufferPool::create(512, 4096);  // 2 MiB: one huge page
    CO_ASSERT_TRUE(pool);
    const MappedMemory& mem = (*pool)->memory();
    EXPECT_TRUE(mem.huge_pages()) << mem.describe();
    EXPECT_EQ(smaps_kernel_page_kb(mem.data()), static_cast<long>(MappedMemory::huge_page_size() / 1024));
    co_await echo_through(**pool, 1u << 20);
    EXPECT_EQ((*pool)->available(), 512u);
  }());
}

TEST_P(PoolMemoryTest, LockedPoolReceives) {
  run([]() -> Task<void> {
    auto pool = BufferPool::create(16, 4096, {.huge_pages = false, .lock = true});
    CO_ASSERT_TRUE(pool);
    EXPECT_TRUE((*pool)->memory().locked()) << (*pool)->memory().describe();
    co_await echo_through(**pool, 200000);
  }());
}

GALAY_INSTANTIATE_ALL_BACKENDS(PoolMemoryTest);

}  // namespace
}  // namespace galay::test
