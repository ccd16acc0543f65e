// What one connection's operations cost in its coroutine frame (issue 17): the op, the
// awaitables built on it and the pooled receiver. A field added to IoOp is paid twice in
// every connection of the recommended echo loop (its receive and its send awaitable), so
// growing these is a decision to make on purpose, with docs/guide.md ("What a connection
// costs") updated: these bounds make it one.
#include <gtest/gtest.h>

#include "galay-kernel/galay-kernel.h"

namespace galay {
namespace {

TEST(Footprint, OpsAndAwaitablesStayWithinTheirBudget) {
  if constexpr (sizeof(void*) != 8) GTEST_SKIP() << "the budgets are for 64-bit targets";
  EXPECT_LE(sizeof(TimerNode), 16u);
  EXPECT_LE(sizeof(IoOp), 112u);
  EXPECT_LE(sizeof(SizeAwaitable), 120u);
  EXPECT_LE(sizeof(PooledRecvAwaitable), 120u);
  EXPECT_LE(sizeof(StreamReceiver), 88u);
  EXPECT_LE(sizeof(TcpSocket), 16u);
}

TEST(Footprint, EveryOpcodeFitsTheSharedSlots) {
  // The op's unions hold one buffer-like pointer, one length and one offset-like word:
  // what every opcode needs (op.h). A msghdr lives in its awaitable, not in the op.
  IoOp op(OpCode::sendmsg, 3);
  MessageHeader hdr;
  std::byte data[4];
  hdr.bind(op, data, sizeof data);
  EXPECT_EQ(op.msg, &hdr.msg);
  EXPECT_EQ(hdr.msg.msg_iov, &hdr.iov);
  EXPECT_EQ(hdr.iov.iov_base, data);
  EXPECT_EQ(hdr.iov.iov_len, sizeof data);
  EXPECT_EQ(op.fd, 3);
}

}  // namespace
}  // namespace galay
