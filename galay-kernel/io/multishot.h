#pragma once
/// @file multishot.h
/// State of a receive or accept that spans many awaits (StreamReceiver, TcpAcceptor). On
/// io_uring one multishot SQE stays armed for it and results that arrive while nobody is
/// waiting queue here; readiness backends use it only for bookkeeping. It lives in the
/// owning object, which calls Backend::release_multishot() before it goes away.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "galay-kernel/common/intrusive_list.h"

namespace galay {

class Backend;
class IoOp;

/// What the backend keeps for a receive or accept that spans many awaits (see the file
/// comment). Its first await attaches it to the backend's entry for its fd, so that
/// closing that fd through the backend ends it: it is then `closed`, and every later await
/// is bad_file_descriptor, even after the number is reused.
struct MultishotState {
  enum class Kind : std::uint8_t { pooled_recv, accept };
  explicit MultishotState(Kind k) noexcept : kind(k) {}

  Kind kind;
  int fd = -1;
  IoOp* waiting = nullptr;        ///< the await in progress, if any
  bool armed = false;             ///< io_uring: a multishot SQE is in flight
  bool has_final = false;         ///< an end or error to deliver after queued results
  bool closed = false;            ///< its fd was closed: later awaits fail with EBADF
  std::int32_t final_result = 0;  ///< 0: EOF, < 0: -errno
  /// The backend it is attached to (set by the first await), which the owner's destructor
  /// must call release_multishot() on; null while never started.
  Backend* backend = nullptr;
  /// Links on the backend's per-fd list of attached states.
  ListLinks<MultishotState> fd_links;
};

/// The states attached to one fd number.
using MultishotList = IntrusiveList<MultishotState, &MultishotState::fd_links>;

/// Accepted connections nobody has claimed yet (io_uring multishot accept).
struct AcceptQueueState : MultishotState {
  AcceptQueueState() noexcept : MultishotState(Kind::accept) {}
  std::vector<int> ready;  ///< FIFO from `head`
  std::size_t head = 0;
  bool unsupported = false;  ///< the kernel refused multishot accept: single-shot from then on
};

}  // namespace galay
