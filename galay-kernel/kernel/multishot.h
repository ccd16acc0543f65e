#pragma once
/// @file multishot.h
/// State of a receive or accept that spans many awaits (StreamReceiver, TcpAcceptor). On
/// io_uring one multishot SQE stays armed for it and results that arrive while nobody is
/// waiting queue here; readiness backends use it only for bookkeeping. It lives in the
/// owning object, which calls Backend::release_multishot() before it goes away.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace galay {

class IoOp;

struct MultishotState {
  enum class Kind : std::uint8_t { pooled_recv, accept };
  explicit MultishotState(Kind k) noexcept : kind(k) {}

  Kind kind;
  int fd = -1;
  IoOp* waiting = nullptr;        ///< the await in progress, if any
  bool armed = false;             ///< io_uring: a multishot SQE is in flight
  bool has_final = false;         ///< an end or error to deliver after queued results
  std::int32_t final_result = 0;  ///< 0: EOF, < 0: -errno
};

/// Accepted connections nobody has claimed yet (io_uring multishot accept).
struct AcceptQueueState : MultishotState {
  AcceptQueueState() noexcept : MultishotState(Kind::accept) {}
  std::vector<int> ready;  ///< FIFO from `head`
  std::size_t head = 0;
  bool unsupported = false;  ///< the kernel refused multishot accept: single-shot from then on
};

}  // namespace galay
