#pragma once
// Internal to net/resolver.cc (not installed): one c-ares channel driven by the scheduler of
// the thread that made it. c-ares's sockets are the library's UdpSocket/TcpSocket (through
// ares_set_socket_functions), so they are opened, waited on and closed through the
// scheduler's backend; ARES_OPT_SOCK_STATE_CB says which of them to wait on, one spawned
// watcher per socket and direction calls ares_process_fd when it is ready, and one spawned
// timer calls it when ares_timeout() says a try has run out. Nothing here includes <ares.h>,
// so the public headers never need c-ares's.
//
// Lifetime: the channel is shared by the Resolver, every lookup in flight, and the watcher
// and timer tasks; it is destroyed (ares_destroy, its sockets closed through the scheduler)
// when the last of them lets go. A lookup whose caller stops waiting (cancel, timeout, frame
// destroyed) is abandoned: its record then belongs to c-ares's callback, which frees it.
// When no lookup on the channel is wanted any more, the abandoned ones are cancelled with
// ares_cancel, which closes the sockets.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "galay-kernel/net/address.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/coro/task.h"
#include "galay-kernel/net/resolver.h"

namespace galay::detail {

class AresChannel;

/// A c-ares channel set up from `options` on the current thread's scheduler.
Expected<std::shared_ptr<AresChannel>> make_ares_channel(const ResolverOptions& options);

/// Look `host` (a name, already checked) up on `channel` for `family`; every address gets
/// `port`. Cancellable through the awaiting task's scope (yields the scope's reason).
Task<Expected<std::vector<SocketAddress>>> ares_lookup(std::shared_ptr<AresChannel> channel, std::string host,
                                                       IpFamily family, std::uint16_t port);

}  // namespace galay::detail
