// The shared-memory IPC channel on every backend: order and boundaries through ring wrap,
// both sides sleeping and waking, close and peer-death errors, size limits, timeouts,
// cancellation, bad descriptors; and across two real processes (the ipc_peer helper, given
// its end by SCM_RIGHTS): 10M messages, a slow reader, a slow writer, either side killed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <optional>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.h"
#include "support/ipc_messages.h"

extern char** environ;

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class IpcChannelTest : public BackendTest {};

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

struct Ends {
  IpcSender tx;
  IpcReceiver rx;
};
Ends open_pair(std::size_t capacity, IpcReceiverOptions options = {}, const MemoryOptions& memory = {}) {
  auto files = make_ipc_channel(capacity, memory);
  EXPECT_TRUE(files.has_value());
  auto tx = IpcSender::open(std::move(files->sender));
  auto rx = IpcReceiver::open(std::move(files->receiver), options);
  EXPECT_TRUE(tx.has_value() && rx.has_value());
  return {std::move(*tx), std::move(*rx)};
}

// A sender and a receiver task on one loop through a 4 KiB ring: both sides fill, sleep on
// their eventfd and are woken by the other, many times over; every message arrives intact.
Task<void> stream_numbered(IpcSender& tx, IpcReceiver& rx, std::uint64_t count) {
  auto [sent_all, received_all] = co_await when_all(
      [](IpcSender& t, std::uint64_t n) -> Task<bool> {
        std::array<std::byte, kMaxIpcTestMessage> msg;
        for (std::uint64_t i = 0; i < n; ++i) {
          const std::size_t len = fill_ipc_message(i, msg);
          if (!co_await t.send(std::span(msg.data(), len), 10s)) co_return false;
        }
        t.close();
        co_return true;
      }(tx, count),
      [](IpcReceiver& r, std::uint64_t n) -> Task<bool> {
        std::array<std::byte, kMaxIpcTestMessage> buf;
        for (std::uint64_t i = 0; i < n; ++i) {
          auto got = co_await r.recv(buf, 10s);
          if (!got || !check_ipc_message(i, std::span(buf.data(), *got))) {
            ADD_FAILURE() << "message " << i << ": " << (got ? "wrong content" : got.error().message());
            co_return false;
          }
        }
        auto end = co_await r.recv(buf, 10s);
        EXPECT_FALSE(end.has_value());
        if (!end) {
          EXPECT_EQ(end.error(), Error::channel_closed) << end.error().message();
        }
        co_return true;
      }(rx, count));
  EXPECT_TRUE(sent_all);
  EXPECT_TRUE(received_all);
}

TEST_P(IpcChannelTest, MessagesKeepOrderAndBoundariesThroughWrapAndSleep) {
  auto [tx, rx] = open_pair(4096);
  run(stream_numbered(tx, rx, 100'000));
}

TEST_P(IpcChannelTest, SpinningReceiverGetsEverything) {
  auto [tx, rx] = open_pair(4096, IpcReceiverOptions{std::chrono::microseconds(20)});
  run(stream_numbered(tx, rx, 20'000));
}

TEST_P(IpcChannelTest, BothEndsSayWhyASmallRingHasNoHugePages) {
  auto [tx, rx] = open_pair(4096);
  for (const std::string& d : {tx.memory_description(), rx.memory_description()}) {
    EXPECT_NE(d.find("in 4 KiB pages"), std::string::npos) << d;
    if (MappedMemory::huge_page_size() != 0) {
      EXPECT_NE(d.find("smaller than one"), std::string::npos) << d;
    }
    EXPECT_NE(d.find(", populated, not locked (not asked)"), std::string::npos) << d;
  }
  tx.close();
  EXPECT_EQ(tx.memory_description(), "");
}

TEST_P(IpcChannelTest, RingOnHugePagesCarriesMessagesThroughWrap) {
  if (std::string why = no_free_huge_pages(3); !why.empty()) GTEST_SKIP() << why;
  auto [tx, rx] = open_pair(std::size_t{2} << 20);  // 2 MiB ring + the header page: two huge pages
  for (const std::string& d : {tx.memory_description(), rx.memory_description()})
    EXPECT_NE(d.find("in 2 MiB huge pages"), std::string::npos) << d;
  run(stream_numbered(tx, rx, 250000));  // about 10 MiB: the ring wraps several times
}

TEST_P(IpcChannelTest, LockedRingOnBothEnds) {
  auto [tx, rx] = open_pair(8192, {}, {.huge_pages = false, .lock = true});
  for (const std::string& d : {tx.memory_description(), rx.memory_description()}) {
    EXPECT_NE(d.find(", locked"), std::string::npos) << d;
    EXPECT_EQ(d.find("huge pages:"), std::string::npos) << d;
  }
  run(stream_numbered(tx, rx, 5000));
}

TEST_P(IpcChannelTest, EmptyMessagesAndTheLargestOne) {
  auto body = []() -> Task<void> {
    auto [tx, rx] = open_pair(8192);
    EXPECT_EQ(tx.max_message_size(), 4096u);
    std::vector<std::byte> big(tx.max_message_size());
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = std::byte(i * 13);
    CO_ASSERT_TRUE(co_await tx.send({}));
    CO_ASSERT_TRUE(co_await tx.send(big));
    std::vector<std::byte> buf(big.size());
    auto empty = co_await rx.recv(buf, 1s);
    CO_ASSERT_TRUE(empty.has_value());
    EXPECT_EQ(*empty, 0u);
    auto got = co_await rx.recv(buf, 1s);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, big.size());
    EXPECT_EQ(buf, big);
  };
  run(body());
}

TEST_P(IpcChannelTest, TooLargeToSendAndTooSmallToReceiveAreErrorsThatLoseNothing) {
  auto body = []() -> Task<void> {
    auto [tx, rx] = open_pair(4096);
    std::vector<std::byte> huge(tx.max_message_size() + 1);
    auto refused = co_await tx.send(huge);
    CO_ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error(), std::errc::message_size);

    CO_ASSERT_TRUE(co_await tx.send(bytes("twelve bytes")));
    std::array<std::byte, 4> small;
    auto too_small = co_await rx.recv(small, 1s);
    CO_ASSERT_FALSE(too_small.has_value());
    EXPECT_EQ(too_small.error(), std::errc::message_size);
    EXPECT_EQ(rx.next_message_size(), std::optional<std::size_t>(12));  // still queued
    std::array<std::byte, 16> fits;
    auto got = co_await rx.recv(fits, 1s);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(fits.data()), *got), "twelve bytes");
  };
  run(body());
}

TEST_P(IpcChannelTest, FullRingWithoutWaitingIsTryAgainAndASendTimesOut) {
  auto body = []() -> Task<void> {
    auto [tx, rx] = open_pair(4096);
    std::array<std::byte, 100> msg{};
    int queued = 0;
    while (tx.try_send(msg)) ++queued;
    EXPECT_EQ(queued, 4096 / 104);
    auto again = tx.try_send(msg);
    CO_ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error(), std::errc::resource_unavailable_try_again);
    auto late = co_await tx.send(msg, 30ms);
    CO_ASSERT_FALSE(late.has_value());
    EXPECT_EQ(late.error(), std::errc::timed_out);
    // Reading one message makes room for exactly one more.
    std::array<std::byte, 100> buf;
    CO_ASSERT_TRUE(rx.try_recv(buf).has_value());
    CO_ASSERT_TRUE(co_await tx.send(msg, 1s));
    for (int i = 0; i < queued; ++i) CO_ASSERT_TRUE(rx.try_recv(buf).has_value());
    auto none = rx.try_recv(buf);
    CO_ASSERT_FALSE(none.has_value());
    EXPECT_EQ(none.error(), std::errc::resource_unavailable_try_again);
  };
  run(body());
}

TEST_P(IpcChannelTest, ReceiveTimesOutAndIsCancelledThenStillWorks) {
  auto body = [](Scheduler& s) -> Task<void> {
    auto [tx, rx] = open_pair(4096);
    std::array<std::byte, 16> buf;
    auto late = co_await rx.recv(buf, 20ms);
    CO_ASSERT_FALSE(late.has_value());
    EXPECT_EQ(late.error(), std::errc::timed_out);

    auto waiter = s.spawn([](IpcReceiver& r) -> Task<std::error_code> {
      std::array<std::byte, 16> b;
      auto got = co_await r.recv(b);
      co_return got ? std::error_code{} : got.error();
    }(rx));
    co_await sleep_for(10ms);
    waiter.cancel();
    EXPECT_EQ(co_await waiter, std::errc::operation_canceled);

    CO_ASSERT_TRUE(co_await tx.send(bytes("after")));
    auto got = co_await rx.recv(buf, 1s);
    CO_ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, 5u);
  };
  run(body(sched()));
}

TEST_P(IpcChannelTest, CloseIsReportedToTheOtherSide) {
  auto body = []() -> Task<void> {
    {
      auto [tx, rx] = open_pair(4096);
      CO_ASSERT_TRUE(co_await tx.send(bytes("last words")));
      tx.close();
      std::array<std::byte, 16> buf;
      auto got = co_await rx.recv(buf, 1s);  // queued messages first
      CO_ASSERT_TRUE(got.has_value());
      auto end = co_await rx.recv(buf, 1s);
      CO_ASSERT_FALSE(end.has_value());
      EXPECT_EQ(end.error(), Error::channel_closed);
      auto again = co_await rx.recv(buf, 1s);  // and it stays closed
      CO_ASSERT_FALSE(again.has_value());
      EXPECT_EQ(again.error(), Error::channel_closed);
    }
    {
      auto [tx, rx] = open_pair(4096);
      rx.close();
      auto refused = co_await tx.send(bytes("anyone?"), 1s);
      CO_ASSERT_FALSE(refused.has_value());
      EXPECT_EQ(refused.error(), std::errc::broken_pipe);
      auto used = co_await rx.recv(std::span<std::byte>{}, 1s);  // a closed end is a bad descriptor
      CO_ASSERT_FALSE(used.has_value());
      EXPECT_EQ(used.error(), std::errc::bad_file_descriptor);
    }
  };
  run(body());
}

TEST_P(IpcChannelTest, ASleepingReceiverIsWokenByClose) {
  auto body = [](Scheduler& s) -> Task<void> {
    auto [tx, rx] = open_pair(4096);
    auto reader = s.spawn([](IpcReceiver& r) -> Task<std::error_code> {
      std::array<std::byte, 16> b;
      auto got = co_await r.recv(b, 5s);
      co_return got ? std::error_code{} : got.error();
    }(rx));
    co_await sleep_for(10ms);
    tx.close();
    EXPECT_EQ(co_await reader, Error::channel_closed);
  };
  run(body(sched()));
}

// The peer's descriptors are closed without closing the channel: what a killed process
// leaves behind. The sleeping side must notice through the link, not hang.
TEST_P(IpcChannelTest, PeerGoneWithoutClosingIsConnectionReset) {
  auto body = [](Scheduler& s) -> Task<void> {
    auto files = make_ipc_channel(4096);
    CO_ASSERT_TRUE(files.has_value());
    auto rx = IpcReceiver::open(std::move(files->receiver));
    CO_ASSERT_TRUE(rx.has_value());
    auto reader = s.spawn([](IpcReceiver& r) -> Task<std::error_code> {
      std::array<std::byte, 16> b;
      auto got = co_await r.recv(b, 5s);
      co_return got ? std::error_code{} : got.error();
    }(*rx));
    co_await sleep_for(10ms);
    files->sender.close();  // the sender's files go away unopened: no close flag was ever set
    EXPECT_EQ(co_await reader, std::errc::connection_reset);

    // The same for a sender waiting for room.
    auto files2 = make_ipc_channel(4096);
    CO_ASSERT_TRUE(files2.has_value());
    auto tx = IpcSender::open(std::move(files2->sender));
    CO_ASSERT_TRUE(tx.has_value());
    std::array<std::byte, 1000> msg{};
    while (tx->try_send(msg)) {
    }
    auto writer = s.spawn([](IpcSender& t) -> Task<std::error_code> {
      std::array<std::byte, 1000> m{};
      auto sent = co_await t.send(m, 5s);
      co_return sent ? std::error_code{} : sent.error();
    }(*tx));
    co_await sleep_for(10ms);
    files2->receiver.close();
    EXPECT_EQ(co_await writer, std::errc::connection_reset);
  };
  run(body(sched()));
}

TEST_P(IpcChannelTest, AReceiverDestroyedUnderAWaitingTaskWakesItWithoutHarm) {
  auto body = [](Scheduler& s) -> Task<void> {
    auto [tx, rx] = open_pair(4096);
    auto owned = std::make_unique<IpcReceiver>(std::move(rx));
    auto reader = s.spawn([](IpcReceiver& r) -> Task<bool> {
      std::array<std::byte, 16> b;
      auto got = co_await r.recv(b, 5s);
      co_return !got.has_value();
    }(*owned));
    co_await sleep_for(10ms);
    owned.reset();  // the wait completes with an error; the end is freed when it returns
    EXPECT_TRUE(co_await reader);
    auto refused = co_await tx.send(bytes("x"), 1s);
    CO_ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error(), std::errc::broken_pipe);
  };
  run(body(sched()));
}

// The ring lives in memory the other process can write. A record or a position that cannot
// be valid is reported as bad_message, never trusted. (The offsets are the channel's
// shared layout: the ring at 4096, the receiver's tail at 128 in the header.)
TEST_P(IpcChannelTest, ACorruptedRingIsBadMessage) {
  auto body = []() -> Task<void> {
    auto files = make_ipc_channel(4096);
    CO_ASSERT_TRUE(files.has_value());
    const int mem = ::fcntl(files->sender.fds()[0], F_DUPFD_CLOEXEC, 0);
    auto* shared = static_cast<std::byte*>(::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0));
    ::close(mem);
    CO_ASSERT_TRUE(shared != MAP_FAILED);
    auto tx = IpcSender::open(std::move(files->sender));
    auto rx = IpcReceiver::open(std::move(files->receiver));
    CO_ASSERT_TRUE(tx && rx);
    CO_ASSERT_TRUE(co_await tx->send(bytes("hello")));
    const std::uint32_t absurd = 0xfffffff0u;
    std::memcpy(shared + 4096, &absurd, sizeof(absurd));  // the record's length
    std::array<std::byte, 64> buf;
    auto got = co_await rx->recv(buf, 1s);
    CO_ASSERT_FALSE(got.has_value());
    EXPECT_EQ(got.error(), std::errc::bad_message);

    // A tail beyond the head: the sender refuses to trust it once it needs to look.
    const std::uint64_t ahead = 1u << 30;
    std::memcpy(shared + 128, &ahead, sizeof(ahead));
    std::array<std::byte, 1000> msg{};
    std::error_code failure;
    for (int i = 0; i < 10 && !failure; ++i) {
      auto sent = tx->try_send(msg);
      if (!sent) failure = sent.error();
    }
    EXPECT_EQ(failure, std::errc::bad_message) << failure.message();
    ::munmap(shared, 8192);
  };
  run(body());
}

TEST_P(IpcChannelTest, BadDescriptorsAreRejected) {
  std::array<int, 3> three{-1, -1, -1};
  auto short_set = IpcEndpointFiles::adopt(three);
  ASSERT_FALSE(short_set.has_value());
  EXPECT_EQ(short_set.error(), std::errc::invalid_argument);

  // A memory fd that is not a channel: open fails and leaves the memory as it was.
  int mem = ::memfd_create("not-a-channel", MFD_CLOEXEC);
  ASSERT_GE(mem, 0);
  ASSERT_EQ(::ftruncate(mem, 4096 * 3), 0);
  std::array<int, 4> fds{mem, ::eventfd(0, EFD_CLOEXEC), ::eventfd(0, EFD_CLOEXEC), ::eventfd(0, EFD_CLOEXEC)};
  auto files = IpcEndpointFiles::adopt(fds);
  ASSERT_TRUE(files.has_value());
  auto rx = IpcReceiver::open(std::move(*files));
  ASSERT_FALSE(rx.has_value());
  EXPECT_EQ(rx.error(), std::errc::invalid_argument);

  auto too_big = make_ipc_channel(std::size_t{4} << 30);
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.error(), std::errc::invalid_argument);

  auto empty = IpcSender::open(IpcEndpointFiles{});
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error(), std::errc::bad_file_descriptor);
}

TEST_P(IpcChannelTest, NoDescriptorIsLeaked) {
  const int before = open_fd_count();
  for (int i = 0; i < 20; ++i) {
    auto [tx, rx] = open_pair(4096);
    run([](IpcSender& t, IpcReceiver& r) -> Task<void> {
      std::array<std::byte, 8> b;
      CO_ASSERT_TRUE(co_await t.send(bytes("x")));
      CO_ASSERT_TRUE(co_await r.recv(b, 1s));
      auto none = co_await r.recv(b, 1ms);  // registers the wait fd with the backend
      EXPECT_FALSE(none.has_value());
    }(tx, rx));
  }
  EXPECT_EQ(open_fd_count(), before);
}

// ---- across two processes ----

// The ipc_peer helper, started with its end of a Unix socket pair at fd 3.
struct Peer {
  pid_t pid = -1;
  UnixStream link;

  void start(BackendKind backend, std::vector<std::string> args) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (sv[1] == 3) {  // dup2 onto itself would keep close-on-exec
      const int moved = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
      ::close(sv[1]);
      sv[1] = moved;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
    std::vector<std::string> argv_s{GALAY_IPC_PEER, std::string(to_string(backend))};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    EXPECT_EQ(::posix_spawn(&pid, GALAY_IPC_PEER, &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(sv[1]);
    auto link = UnixStream::adopt(sv[0]);
    EXPECT_TRUE(link.has_value());
    this->link = std::move(*link);
  }

  // Hand the peer its end (SCM_RIGHTS) and drop our copies, so that only the peer holds it.
  Task<bool> give(IpcEndpointFiles& files) {
    const std::array<std::byte, 1> tag{std::byte{'c'}};
    const auto fds = files.fds();
    auto sent = co_await link.send_fds(tag, fds, 10s);
    files.close();
    co_return sent.has_value();
  }

  // The exit status (or 128 + the signal), polled so the loop keeps running meanwhile.
  Task<int> exit_status(std::chrono::seconds limit = 60s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "ipc_peer did not exit in time";
        co_return -1;
      }
      co_await sleep_for(2ms);
    }
    pid = -1;
    co_return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  ~Peer() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// Start `peer` with `args` as the writer of a new channel, hand it its end, open ours.
// (Callers pass `args` as a named vector: GCC 12 rejects a braced list inside co_await.)
Task<std::optional<IpcReceiver>> read_from_peer(Peer& peer, BackendKind backend, std::vector<std::string> args,
                                                std::size_t capacity) {
  auto files = make_ipc_channel(capacity);
  if (!files) co_return std::nullopt;
  peer.start(backend, std::move(args));
  if (!co_await peer.give(files->sender)) co_return std::nullopt;
  auto rx = IpcReceiver::open(std::move(files->receiver));
  if (!rx) co_return std::nullopt;
  co_return std::move(*rx);
}

// Start `peer` with `args` as the reader of a new channel, hand it its end, open ours.
Task<std::optional<IpcSender>> write_to_peer(Peer& peer, BackendKind backend, std::vector<std::string> args,
                                             std::size_t capacity) {
  auto files = make_ipc_channel(capacity);
  if (!files) co_return std::nullopt;
  peer.start(backend, std::move(args));
  if (!co_await peer.give(files->receiver)) co_return std::nullopt;
  auto tx = IpcSender::open(std::move(files->sender));
  if (!tx) co_return std::nullopt;
  co_return std::move(*tx);
}

// The test process reads numbered messages that the peer sends.
Task<std::uint64_t> read_numbered(IpcReceiver& rx, std::uint64_t limit, std::uint64_t pause_every = 0,
                                  std::chrono::microseconds pause = {}) {
  std::array<std::byte, kMaxIpcTestMessage> buf;
  std::uint64_t i = 0;
  for (; i < limit; ++i) {
    auto got = co_await rx.recv(buf, 20s);
    if (!got) {
      if (got.error() != Error::channel_closed && got.error() != std::errc::connection_reset)
        ADD_FAILURE() << "after " << i << " messages: " << got.error().message();
      break;
    }
    if (!check_ipc_message(i, std::span(buf.data(), *got))) {
      ADD_FAILURE() << "message " << i << " is wrong (size " << *got << ")";
      break;
    }
    if (pause_every != 0 && (i + 1) % pause_every == 0) std::this_thread::sleep_for(pause);
  }
  co_return i;
}

TEST_P(IpcChannelTest, TenMillionMessagesBetweenProcessesArriveInOrder) {
  auto body = [](BackendKind backend) -> Task<void> {
    constexpr std::uint64_t kCount = 10'000'000;
    Peer peer;
    std::vector<std::string> args{"send", std::to_string(kCount)};
    auto rx = co_await read_from_peer(peer, backend, std::move(args), 1 << 20);
    CO_ASSERT_TRUE(rx.has_value());
    EXPECT_EQ(co_await read_numbered(*rx, kCount), kCount);
    std::array<std::byte, 8> buf;
    auto end = co_await rx->recv(buf, 20s);
    CO_ASSERT_FALSE(end.has_value());
    EXPECT_EQ(end.error(), Error::channel_closed);
    EXPECT_EQ(co_await peer.exit_status(), 0);
  };
  run(body(GetParam()), 300s);
}

TEST_P(IpcChannelTest, SlowReaderAcrossProcessesLosesNothing) {
  auto body = [](BackendKind backend) -> Task<void> {
    constexpr std::uint64_t kCount = 200'000;
    Peer peer;
    // A 4 KiB ring: the sender fills it and sleeps often.
    std::vector<std::string> args{"send", std::to_string(kCount)};
    auto rx = co_await read_from_peer(peer, backend, std::move(args), 4096);
    CO_ASSERT_TRUE(rx.has_value());
    EXPECT_EQ(co_await read_numbered(*rx, kCount, 2000, 1ms), kCount);
    EXPECT_EQ(co_await peer.exit_status(), 0);
  };
  run(body(GetParam()), 120s);
}

TEST_P(IpcChannelTest, SlowWriterAcrossProcessesLosesNothing) {
  auto body = [](BackendKind backend) -> Task<void> {
    constexpr std::uint64_t kCount = 100'000;
    // The peer reads and checks; we pause every 100 messages so it sleeps and is woken often.
    Peer peer;
    std::vector<std::string> args{"recv", std::to_string(kCount)};
    auto tx = co_await write_to_peer(peer, backend, std::move(args), 1 << 16);
    CO_ASSERT_TRUE(tx.has_value());
    std::array<std::byte, kMaxIpcTestMessage> msg;
    for (std::uint64_t i = 0; i < kCount; ++i) {
      const std::size_t n = fill_ipc_message(i, msg);
      auto sent = co_await tx->send(std::span(msg.data(), n), 20s);
      CO_ASSERT_TRUE(sent.has_value());
      if ((i + 1) % 100 == 0) std::this_thread::sleep_for(50us);
    }
    tx->close();
    EXPECT_EQ(co_await peer.exit_status(), 0);
  };
  run(body(GetParam()), 120s);
}

TEST_P(IpcChannelTest, WriterKilledMidStreamGivesQueuedMessagesThenConnectionReset) {
  auto body = [](BackendKind backend) -> Task<void> {
    Peer peer;
    std::vector<std::string> args{"send-forever"};
    auto rx = co_await read_from_peer(peer, backend, std::move(args), 1 << 16);
    CO_ASSERT_TRUE(rx.has_value());
    CO_ASSERT_TRUE(co_await read_numbered(*rx, 50'000) == 50'000);
    ::kill(peer.pid, SIGKILL);
    EXPECT_EQ(co_await peer.exit_status(), 128 + SIGKILL);
    // Everything it queued before dying is still delivered in order, then the death.
    std::array<std::byte, kMaxIpcTestMessage> buf;
    std::uint64_t i = 50'000;
    for (;; ++i) {
      auto got = co_await rx->recv(buf, 10s);
      if (!got) {
        EXPECT_EQ(got.error(), std::errc::connection_reset) << got.error().message();
        break;
      }
      CO_ASSERT_TRUE(check_ipc_message(i, std::span(buf.data(), *got)));
    }
    EXPECT_GT(i, 50'000u);  // the 64 KiB ring was full when it died
  };
  run(body(GetParam()), 120s);
}

TEST_P(IpcChannelTest, ReaderKilledMidStreamFailsTheWriterWithConnectionReset) {
  auto body = [](BackendKind backend) -> Task<void> {
    Peer peer;
    std::vector<std::string> args{"recv-forever"};
    auto tx = co_await write_to_peer(peer, backend, std::move(args), 1 << 16);
    CO_ASSERT_TRUE(tx.has_value());
    std::array<std::byte, kMaxIpcTestMessage> msg;
    std::uint64_t i = 0;
    for (; i < 20'000; ++i) {
      const std::size_t n = fill_ipc_message(i, msg);
      CO_ASSERT_TRUE(co_await tx->send(std::span(msg.data(), n), 10s));
    }
    ::kill(peer.pid, SIGKILL);
    EXPECT_EQ(co_await peer.exit_status(), 128 + SIGKILL);
    // Sends succeed until the ring is full, then the wait for room reports the death.
    std::error_code failure;
    for (std::uint64_t extra = 0; extra < 100'000 && !failure; ++extra, ++i) {
      const std::size_t n = fill_ipc_message(i, msg);
      auto sent = co_await tx->send(std::span(msg.data(), n), 10s);
      if (!sent) failure = sent.error();
    }
    EXPECT_EQ(failure, std::errc::connection_reset) << failure.message();
  };
  run(body(GetParam()), 120s);
}

GALAY_INSTANTIATE_ALL_BACKENDS(IpcChannelTest);

}  // namespace
}  // namespace galay::test
