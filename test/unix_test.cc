// Unix-domain streams on every backend: echo over a filesystem name and an abstract name,
// socketpair, fd passing, and the socket file removed on close.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class UnixTest : public BackendTest {};

std::string temp_socket_path() {
  return "/tmp/galay-unix-test-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()) + ".sock";
}

Task<void> echo_once(UnixStream& listener) {
  auto conn = co_await listener.accept(5s);
  EXPECT_TRUE(conn) << conn.error().message();
  if (!conn) co_return;
  // Echo until the asker shuts its side down (its question may arrive in pieces).
  char buf[64];
  for (;;) {
    auto n = co_await conn->recv(buf, sizeof buf, 5s);
    if (!n || *n == 0) break;
    if (!co_await conn->send_all(buf, *n)) break;
  }
}

Task<std::string> ask(const UnixAddress& addr, std::string_view q) {
  auto c = UnixStream::open();
  if (auto r = co_await c->connect(addr, 5s); !r) co_return "connect: " + r.error().message();
  co_await c->send_all(q);
  (void)c->shutdown(ShutdownHow::write);
  char buf[64];
  auto n = co_await recv_exactly(*c, buf, q.size());
  co_return n ? std::string(buf, *n) : n.error().message();
}

TEST_P(UnixTest, EchoOverAPathAndTheFileIsRemoved) {
  std::string path = temp_socket_path();
  auto body = [](std::string path) -> Task<void> {
    auto addr = UnixAddress::parse(path);
    CO_ASSERT_TRUE(addr);
    {
      auto l = UnixStream::listen_on(*addr);
      CO_ASSERT_TRUE(l);
      struct stat st {};
      EXPECT_EQ(::stat(path.c_str(), &st), 0);
      EXPECT_TRUE(S_ISSOCK(st.st_mode));
      auto [unit, reply] = co_await when_all(echo_once(*l), ask(*addr, "over a path"));
      (void)unit;
      EXPECT_EQ(reply, "over a path");
    }
    EXPECT_NE(::access(path.c_str(), F_OK), 0) << "the listener must remove its socket file";
  };
  run(body(path));
  ::unlink(path.c_str());
}

TEST_P(UnixTest, AbstractName) {
  auto body = []() -> Task<void> {
    auto addr = UnixAddress::parse("@galay-test-" + std::to_string(::getpid()));
    CO_ASSERT_TRUE(addr);
    EXPECT_TRUE(addr->is_abstract());
    auto l = UnixStream::listen_on(*addr);
    CO_ASSERT_TRUE(l);
    auto [unit, reply] = co_await when_all(echo_once(*l), ask(*addr, "abstract"));
    (void)unit;
    EXPECT_EQ(reply, "abstract");
  };
  run(body());
}

TEST_P(UnixTest, BadNames) {
  EXPECT_FALSE(UnixAddress::parse(""));
  EXPECT_EQ(UnixAddress::parse(std::string(200, 'x')).error(), std::errc::filename_too_long);
  auto body = []() -> Task<void> {
    auto c = UnixStream::open();
    auto r = co_await c->connect(*UnixAddress::parse("/nonexistent/dir/sock"), 1s);
    CO_ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::no_such_file_or_directory) << r.error().message();
  };
  run(body());
}

TEST_P(UnixTest, PassAFileDescriptor) {
  auto body = []() -> Task<void> {
    auto p = UnixStream::pair();
    CO_ASSERT_TRUE(p);
    auto& [a, b] = *p;
    // Send the read end of a pipe; read through the received copy.
    int pipefd[2];
    CO_ASSERT_TRUE(::pipe2(pipefd, O_CLOEXEC) == 0);
    int send_fds[] = {pipefd[0]};
    auto sent = co_await a.send_fds(std::as_bytes(std::span("x", 1)), send_fds, 5s);
    EXPECT_TRUE(sent && *sent == 1);
    ::close(pipefd[0]);  // the receiver has its own reference now
    std::byte buf[8];
    int got[4] = {-1, -1, -1, -1};
    auto r = co_await b.recv_fds(buf, got, 5s);
    CO_ASSERT_TRUE(r);
    EXPECT_EQ(r->bytes, 1u);
    EXPECT_EQ(r->fd_count, 1u);
    EXPECT_FALSE(r->truncated);
    CO_ASSERT_TRUE(got[0] >= 0);
    EXPECT_EQ(::write(pipefd[1], "through", 7), 7);
    char text[8] = {};
    EXPECT_EQ(::read(got[0], text, 7), 7);
    EXPECT_STREQ(text, "through");
    EXPECT_TRUE(::fcntl(got[0], F_GETFD) & FD_CLOEXEC);
    ::close(got[0]);
    ::close(pipefd[1]);
    // Too many descriptors is an error value, not a truncated message.
    int many[kMaxPassedFds + 1];
    for (auto& f : many) f = 0;
    auto too_many = co_await a.send_fds(std::as_bytes(std::span("y", 1)), many);
    EXPECT_EQ(too_many.error(), std::errc::invalid_argument);
  };
  run(body());
}

TEST_P(UnixTest, SocketPairHalfCloseAndEof) {
  auto body = []() -> Task<void> {
    auto p = UnixStream::pair();
    CO_ASSERT_TRUE(p);
    auto& [a, b] = *p;
    EXPECT_TRUE(co_await a.send_all("bye"));
    EXPECT_TRUE(a.shutdown(ShutdownHow::write));
    char buf[8];
    auto n = co_await recv_exactly(b, buf, 3);
    EXPECT_TRUE(n && *n == 3);
    auto eof = co_await b.recv(buf, sizeof buf, 5s);
    EXPECT_TRUE(eof && *eof == 0);
  };
  run(body());
}

GALAY_INSTANTIATE_ALL_BACKENDS(UnixTest);

}  // namespace
}  // namespace galay::test
