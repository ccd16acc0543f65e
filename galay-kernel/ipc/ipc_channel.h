#pragma once
/// @file ipc_channel.h
/// A one-way message channel between two processes: a single-producer/single-consumer ring
/// in shared memory (memfd + mmap) with eventfd wakeups that a coroutine awaits on every
/// backend. Steady traffic makes no system call per message: each side announces when it is
/// about to sleep (a flag in the shared header, Dekker-style with a full fence on both
/// sides), and the other side writes the eventfd only then. A socket pair between the two
/// ends ("link") reports a peer that went away without closing. Linux only (memfd, eventfd).
///
/// Setting up, with fork():
/// @code
///   auto files = make_ipc_channel(1 << 20);            // before fork
///   if (fork() == 0) { files->sender.close(); auto rx = IpcReceiver::open(std::move(files->receiver)); ... }
///   files->receiver.close(); auto tx = IpcSender::open(std::move(files->sender));
/// @endcode
/// or hand `files->receiver.fds()` to another process with UnixStream::send_fds() and
/// rebuild them there with IpcEndpointFiles::adopt().

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "galay-kernel/common/expected.h"
#include "galay-kernel/common/mapped_memory.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/coro/task.h"

namespace galay {

namespace detail {
struct IpcEndpoint;
}  // namespace detail
struct IpcChannelFiles;

/// The descriptors one end of an IPC channel needs, owned (closed on destruction). They carry
/// no channel state: closing them is not "closing the channel".
class IpcEndpointFiles {
 public:
  /// Number of descriptors an end is made of (memory, data event, space event, link).
  static constexpr std::size_t kCount = 4;
  IpcEndpointFiles() noexcept = default;
  /// Take over the other's descriptors.
  IpcEndpointFiles(IpcEndpointFiles&& o) noexcept;
  /// Close these descriptors, then take over the other's.
  IpcEndpointFiles& operator=(IpcEndpointFiles&& o) noexcept;
  IpcEndpointFiles(const IpcEndpointFiles&) = delete;
  IpcEndpointFiles& operator=(const IpcEndpointFiles&) = delete;
  ~IpcEndpointFiles() { close(); }

  /// Take ownership of descriptors received from the peer process (in fds() order). Fails
  /// with `invalid_argument` if there are not exactly kCount of them; they are closed then.
  static Expected<IpcEndpointFiles> adopt(std::span<const int> fds) noexcept;
  /// The descriptors, in the order adopt() takes them (for UnixStream::send_fds()).
  std::array<int, kCount> fds() const noexcept { return fds_; }
  /// True while the descriptors are held.
  bool valid() const noexcept { return fds_[0] >= 0; }
  /// Close every descriptor (the end that keeps the other role calls this after handing
  /// them over, or the peer could not notice that this process went away).
  void close() noexcept;

 private:
  friend Expected<IpcChannelFiles> make_ipc_channel(std::size_t capacity, const MemoryOptions& memory) noexcept;
  friend struct detail::IpcEndpoint;
  std::array<int, kCount> fds_{-1, -1, -1, -1};
};

/// Both ends of a new channel, before they are given to their processes.
struct IpcChannelFiles {
  /// For the process that will write (IpcSender::open()).
  IpcEndpointFiles sender;
  /// For the process that will read (IpcReceiver::open()).
  IpcEndpointFiles receiver;
};

/// Create a channel whose ring holds `capacity` bytes, rounded up to a power of two of at
/// least 4 KiB (each message takes 4 bytes plus its size). Fails with the errno of memfd,
/// eventfd, socketpair or mmap, or `invalid_argument` above 1 GiB.
///
/// The shared memory follows MappedMemory's policy (common/mapped_memory.h) under `memory`:
/// a hugetlb memfd when the ring is at least one huge page and some are free (else
/// ordinary pages, with the reason); each end pre-faults its mapping when `populate` is
/// set and mlocks it when `lock` is. Each end's memory_description() says what it got.
Expected<IpcChannelFiles> make_ipc_channel(std::size_t capacity, const MemoryOptions& memory = {}) noexcept;

/// `co_await tx.send(msg)` → Expected<void>. Completes at once when the ring has room.
class [[nodiscard]] IpcSendAwaitable {
 public:
  /// Send `msg` through the end `ep`, waiting at most `timeout` for room.
  IpcSendAwaitable(detail::IpcEndpoint* ep, std::span<const std::byte> msg, Timeout timeout) noexcept
      : ep_(ep), msg_(msg), timeout_(timeout) {}
  /// Coroutine protocol: tries to send; true unless the ring is full.
  bool await_ready() noexcept;
  template <class P>
  /// Coroutine protocol: waits for room in a child task running in the caller's cancel scope.
  bool await_suspend(std::coroutine_handle<P> h) {
    slow_.emplace(wait_and_send());
    return slow_->operator co_await().await_suspend(h);  // false: done without sleeping
  }
  /// Coroutine protocol: success, or why nothing was sent.
  Expected<void> await_resume() noexcept;

 private:
  Task<Expected<void>> wait_and_send();
  detail::IpcEndpoint* ep_;
  std::span<const std::byte> msg_;
  Timeout timeout_;
  Expected<void> done_;
  std::optional<Task<Expected<void>>> slow_;
};

/// `co_await rx.recv(buf)` → Expected<size_t>. Completes at once when a message is queued.
class [[nodiscard]] IpcRecvAwaitable {
 public:
  /// Receive one message into `buf` from the end `ep`, waiting at most `timeout`.
  IpcRecvAwaitable(detail::IpcEndpoint* ep, std::span<std::byte> buf, Timeout timeout) noexcept
      : ep_(ep), buf_(buf), timeout_(timeout) {}
  /// Coroutine protocol: tries to receive (spinning first if the receiver was opened so).
  bool await_ready() noexcept;
  template <class P>
  /// Coroutine protocol: sleeps on the data eventfd in a child task in the caller's cancel scope.
  bool await_suspend(std::coroutine_handle<P> h) {
    slow_.emplace(wait_and_recv());
    return slow_->operator co_await().await_suspend(h);  // false: done without sleeping
  }
  /// Coroutine protocol: the message size, or the error.
  Expected<std::size_t> await_resume() noexcept;

 private:
  Task<Expected<std::size_t>> wait_and_recv();
  detail::IpcEndpoint* ep_;
  std::span<std::byte> buf_;
  Timeout timeout_;
  Expected<std::size_t> done_{0};
  std::optional<Task<Expected<std::size_t>>> slow_;
};

/// The writing end. One coroutine sends at a time. Errors: a message larger than
/// max_message_size() is `message_size`; the receiver closed is `broken_pipe`; the receiver
/// process went away without closing is `connection_reset` (noticed when the ring is full,
/// since a sender with room never waits); a timeout is `timed_out`.
class IpcSender {
 public:
  /// Map the channel from `files` (taken over). Fails on a descriptor that is not a channel.
  static Expected<IpcSender> open(IpcEndpointFiles&& files) noexcept;
  /// Take over the other's end.
  IpcSender(IpcSender&&) noexcept;
  /// close() this end, then take over the other's.
  IpcSender& operator=(IpcSender&&) noexcept;
  /// close().
  ~IpcSender();

  /// Queue one message; waits (on the space eventfd) while the ring is full.
  IpcSendAwaitable send(std::span<const std::byte> msg, Timeout timeout = {}) noexcept {
    return {ep_.get(), msg, timeout};
  }
  /// Queue one message without waiting: `resource_unavailable_try_again` when full.
  Expected<void> try_send(std::span<const std::byte> msg) noexcept;
  /// Largest message the ring can take.
  std::size_t max_message_size() const noexcept;
  /// This end's mapping of the ring, in MappedMemory::describe()'s words ("" once closed).
  std::string memory_description() const;
  /// Mark the channel closed (the receiver gets Error::channel_closed after the queued
  /// messages), wake the receiver and release everything. Idempotent.
  void close() noexcept;

 private:
  explicit IpcSender(std::unique_ptr<detail::IpcEndpoint> ep) noexcept;
  std::unique_ptr<detail::IpcEndpoint> ep_;
};

/// How an IpcReceiver waits.
struct IpcReceiverOptions {
  /// Before sleeping in the kernel, re-check the ring for up to this long (busy-polling the
  /// loop thread: other tasks on it do not run meanwhile). 0: sleep at once. A few µs turns
  /// a ping-pong's wakeup syscalls into cache-line transfers when both sides have a core.
  std::chrono::nanoseconds spin{0};
};

/// The reading end. One coroutine receives at a time. Errors: the sender closed and every
/// message was read is Error::channel_closed; the sender process went away without closing
/// is `connection_reset` (after the messages it queued); a buffer smaller than the next
/// message is `message_size` (the message stays queued: see next_message_size()); a record
/// that cannot be valid (a corrupted ring) is `bad_message`; a timeout is `timed_out`.
/// One process reads a channel (and one writes it): the ring has no locks between
/// several readers or writers.
class IpcReceiver {
 public:
  /// Map the channel from `files` (taken over). Fails on a descriptor that is not a channel.
  static Expected<IpcReceiver> open(IpcEndpointFiles&& files, IpcReceiverOptions options = {}) noexcept;
  /// Take over the other's end.
  IpcReceiver(IpcReceiver&&) noexcept;
  /// close() this end, then take over the other's.
  IpcReceiver& operator=(IpcReceiver&&) noexcept;
  /// close().
  ~IpcReceiver();

  /// Receive the next message into `buf`; sleeps on the data eventfd while the ring is empty.
  IpcRecvAwaitable recv(std::span<std::byte> buf, Timeout timeout = {}) noexcept { return {ep_.get(), buf, timeout}; }
  /// Receive without waiting: `resource_unavailable_try_again` when nothing is queued
  /// (a sender that died is reported by recv(), which looks at the link before sleeping).
  Expected<std::size_t> try_recv(std::span<std::byte> buf) noexcept;
  /// Size of the next queued message, if there is one.
  std::optional<std::size_t> next_message_size() noexcept;
  /// This end's mapping of the ring, in MappedMemory::describe()'s words ("" once closed).
  std::string memory_description() const;
  /// Tell the sender nothing more will be read (its sends fail with `broken_pipe`), wake it
  /// and release everything. Idempotent.
  void close() noexcept;

 private:
  explicit IpcReceiver(std::unique_ptr<detail::IpcEndpoint> ep) noexcept;
  std::unique_ptr<detail::IpcEndpoint> ep_;
};

}  // namespace galay
