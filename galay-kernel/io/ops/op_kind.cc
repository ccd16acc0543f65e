#include "galay-kernel/io/ops/op_kind.h"

#include "galay-kernel/io/ops/file_ops.h"
#include "galay-kernel/io/ops/path_ops.h"
#include "galay-kernel/io/ops/socket_ops.h"

namespace galay::detail {
namespace {

// One table entry from an op struct: each facet it declares, null for the rest. The
// io_uring and libaio facets exist only where this build has those backends.
template <class Op>
constexpr void describe(std::array<OpKind, kOpCodeCount>& table, const char* name) {
  OpKind& k = table[static_cast<std::size_t>(Op::code)];
  k.name = name;
  k.route = Op::route;
  k.flow = Op::flow;
#if defined(GALAY_HAVE_IO_URING)
  if constexpr (requires { &Op::prep; }) k.prep = &Op::prep;
  if constexpr (requires { &Op::on_cqe; }) k.on_cqe = &Op::on_cqe;
  if constexpr (requires { &Op::prep_fixed; }) k.prep_fixed = &Op::prep_fixed;
#endif
#if defined(__linux__)
  if constexpr (requires { &Op::aio_prep; }) k.aio_prep = &Op::aio_prep;
#endif
  if constexpr (requires { &Op::initiate; }) k.initiate = &Op::initiate;
  if constexpr (requires { &Op::attempt; }) k.attempt = &Op::attempt;
  if constexpr (requires { &Op::blocking; }) k.blocking = &Op::blocking;
}

constexpr std::array<OpKind, kOpCodeCount> build_table() {
  std::array<OpKind, kOpCodeCount> t{};
  describe<ops::Accept>(t, "accept");
  describe<ops::AcceptMultishot>(t, "accept_multishot");
  describe<ops::Connect>(t, "connect");
  describe<ops::Recv>(t, "recv");
  describe<ops::RecvPooled>(t, "recv_pooled");
  describe<ops::RecvMsg>(t, "recvmsg");
  describe<ops::Readv>(t, "readv");
  describe<ops::Send>(t, "send");
  describe<ops::SendMsg>(t, "sendmsg");
  describe<ops::PollRead>(t, "poll_read");
  describe<ops::PollWrite>(t, "poll_write");
  describe<ops::Close>(t, "close");
  describe<ops::ReadAt>(t, "read_at");
  describe<ops::WriteAt>(t, "write_at");
  describe<ops::ReadvAt>(t, "readv_at");
  describe<ops::WritevAt>(t, "writev_at");
  describe<ops::Fsync>(t, "fsync");
  describe<ops::Fdatasync>(t, "fdatasync");
  describe<ops::Fallocate>(t, "fallocate");
  describe<ops::OpenAt>(t, "openat");
  describe<ops::Statx>(t, "statx");
  describe<ops::RenameAt>(t, "renameat");
  describe<ops::UnlinkAt>(t, "unlinkat");
  describe<ops::MkdirAt>(t, "mkdirat");
  describe<ops::SyncDir>(t, "sync_dir");
  describe<ops::ReadDir>(t, "read_dir");
  return t;
}

constexpr bool every_code_described(const std::array<OpKind, kOpCodeCount>& t) {
  for (const OpKind& k : t)
    if (k.name == nullptr) return false;
  return true;
}

}  // namespace

constinit const std::array<OpKind, kOpCodeCount> kOpKinds = build_table();
static_assert(every_code_described(build_table()), "an OpCode has no op struct in io/ops/");

}  // namespace galay::detail

namespace galay {
const char* to_string(OpCode code) noexcept {
  return static_cast<std::size_t>(code) < kOpCodeCount ? detail::op_kind(code).name : "unknown";
}
}  // namespace galay
