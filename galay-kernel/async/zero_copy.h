#pragma once
/// @file zero_copy.h
/// Sending a file over a stream socket without copying it through user space.

#include <sys/types.h>

#include <cstddef>

#include "galay-kernel/async/stream_socket.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/kernel/io_op.h"
#include "galay-kernel/kernel/task.h"

namespace galay {

/// Send `count` bytes of the file `file_fd`, starting at `offset`, over `socket`; `count`
/// 0 means "up to the end of the file". Linux uses sendfile(2) (page cache → socket, no
/// user-space copy); other systems read and send through a 64 KiB buffer. Partial writes
/// and a full socket buffer are handled by waiting for writability (`timeout` applies to
/// each wait), so it returns only when everything was sent, the file ended early (the
/// result is then smaller than `count`), or an error occurred: a peer reset or close is
/// `std::errc::connection_reset` / `broken_pipe` (never SIGPIPE), a bad fd `bad_file_descriptor`.
/// The file offset of `file_fd` is not used or changed. Reading a file that is not in the
/// page cache blocks the loop thread inside sendfile, as a read would: for cold, large files
/// use File (async reads) and send_all instead.
Task<Expected<std::size_t>> send_file(StreamSocket& socket, int file_fd, off_t offset, std::size_t count,
                                      Timeout timeout = {});

}  // namespace galay
