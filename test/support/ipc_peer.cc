// The other process of the cross-process IPC channel tests (test/ipc_channel_test.cc).
// It gets one end of a channel over the Unix stream socket at fd 3 (SCM_RIGHTS), then:
//   ipc_peer <backend> send <count> [pause_every] [pause_us]   sends numbered messages, then closes
//   ipc_peer <backend> send-forever                             sends numbered messages until killed
//   ipc_peer <backend> recv <count> [pause_every] [pause_us]   checks numbered messages, then closes
//   ipc_peer <backend> recv-forever                             checks messages until killed
// Exit status 0 means every message it received was the expected one, in order.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "galay-kernel/galay-kernel.h"
#include "support/ipc_messages.h"

using namespace galay;

namespace {

struct Args {
  std::string mode;
  std::uint64_t count = 0;
  std::uint64_t pause_every = 0;
  std::uint64_t pause_us = 0;
};

Task<int> run_peer(Args args) {
  auto link = UnixStream::adopt(3);
  if (!link) {
    std::fprintf(stderr, "ipc_peer: fd 3: %s\n", link.error().message().c_str());
    co_return 2;
  }
  std::array<std::byte, 1> tag{};
  std::array<int, IpcEndpointFiles::kCount> fds{};
  auto got = co_await link->recv_fds(tag, fds, std::chrono::seconds(20));
  if (!got || got->fd_count != fds.size()) {
    std::fprintf(stderr, "ipc_peer: no channel descriptors\n");
    co_return 2;
  }
  auto files = IpcEndpointFiles::adopt(fds);
  if (!files) co_return 2;
  const bool forever = args.mode.ends_with("-forever");
  const std::uint64_t count = forever ? ~std::uint64_t{0} : args.count;

  if (args.mode.starts_with("send")) {
    auto tx = IpcSender::open(std::move(*files));
    if (!tx) co_return 2;
    std::array<std::byte, test::kMaxIpcTestMessage> msg;
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::size_t n = test::fill_ipc_message(i, msg);
      auto sent = co_await tx->send(std::span(msg.data(), n));
      if (!sent) {
        std::fprintf(stderr, "ipc_peer: send %llu: %s\n", static_cast<unsigned long long>(i),
                     sent.error().message().c_str());
        co_return 3;
      }
      if (args.pause_every != 0 && (i + 1) % args.pause_every == 0)
        std::this_thread::sleep_for(std::chrono::microseconds(args.pause_us));
    }
    tx->close();
    co_return 0;
  }

  auto rx = IpcReceiver::open(std::move(*files));
  if (!rx) co_return 2;
  std::array<std::byte, test::kMaxIpcTestMessage> buf;
  for (std::uint64_t i = 0; i < count; ++i) {
    auto got_msg = co_await rx->recv(buf);
    if (!got_msg) {
      std::fprintf(stderr, "ipc_peer: recv %llu: %s\n", static_cast<unsigned long long>(i),
                   got_msg.error().message().c_str());
      co_return 3;
    }
    if (!test::check_ipc_message(i, std::span(buf.data(), *got_msg))) {
      std::fprintf(stderr, "ipc_peer: message %llu is wrong\n", static_cast<unsigned long long>(i));
      co_return 4;
    }
    if (args.pause_every != 0 && (i + 1) % args.pause_every == 0)
      std::this_thread::sleep_for(std::chrono::microseconds(args.pause_us));
  }
  // The sender must have closed after exactly `count` messages.
  auto end = co_await rx->recv(buf, std::chrono::seconds(20));
  if (end || end.error() != Error::channel_closed) {
    std::fprintf(stderr, "ipc_peer: expected channel_closed after %llu messages\n",
                 static_cast<unsigned long long>(count));
    co_return 5;
  }
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: ipc_peer <backend> send|recv|send-forever|recv-forever [count [every us]]\n");
    return 2;
  }
  Args args;
  args.mode = argv[2];
  if (argc > 3) args.count = std::strtoull(argv[3], nullptr, 10);
  if (argc > 4) args.pause_every = std::strtoull(argv[4], nullptr, 10);
  if (argc > 5) args.pause_us = std::strtoull(argv[5], nullptr, 10);
  auto kind = parse_backend_kind(argv[1]);
  if (!kind) return 2;
  Scheduler::Options opts;
  opts.backend = *kind;
  auto sched = Scheduler::create(opts);
  if (!sched) {
    std::fprintf(stderr, "ipc_peer: %s\n", sched.error().message().c_str());
    return 2;
  }
  return (*sched)->block_on(run_peer(args));
}
