#pragma once
/// @file wait_list.h
/// Internal. WaitList: an intrusive FIFO of IoOps through IoOp::links, for whoever holds
/// operations until they can run (readiness backends per fd and direction, the blocking
/// pool's queue, io_uring's per-fd list, the accept gate). Linking allocates nothing.

#include "galay-kernel/common/intrusive_list.h"
#include "galay-kernel/io/op.h"

namespace galay {

/// FIFO of IoOps (see the file comment).
using WaitList = IntrusiveList<IoOp, &IoOp::links>;

}  // namespace galay
