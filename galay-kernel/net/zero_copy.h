#pragma once
/// @file zero_copy.h
/// Moving bytes between sockets and files without copying them through user space:
/// send_file (file → socket), splice_stream (socket → socket), splice_to_file (socket → file).

#include <sys/types.h>

#include <cstddef>

#include "galay-kernel/net/stream_socket.h"
#include "galay-kernel/common/expected.h"
#include "galay-kernel/io/op.h"
#include "galay-kernel/coro/task.h"

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

/// Move bytes from the socket `from` to the socket `to` without copying them through user
/// space: Linux splices them through a pipe (socket → pipe → socket, pages moved, not
/// copied); other systems receive and send through a 64 KiB buffer. `count` 0 means "until
/// `from` reaches end of stream". Returns the bytes delivered to `to`: `count`, or fewer if
/// `from` ended first. Bytes past `count` stay unread in `from`. Partial progress and full or
/// empty socket buffers are handled by waiting (`timeout` applies to each wait). An error
/// on either side (reset, closed, timeout) is returned as is; bytes already moved are not
/// reported then, and any bytes still in the pipe are lost with the connection.
Task<Expected<std::size_t>> splice_stream(StreamSocket& from, StreamSocket& to, std::size_t count = 0,
                                          Timeout timeout = {});

/// Receive `count` bytes (0: until end of stream) from the socket `from` into the file
/// `file_fd` at `offset`, through a pipe on Linux (socket → pipe → page cache, no copy in
/// user space); the file's own offset is not used. Returns the bytes written, fewer than
/// `count` if the stream ended first. Writing to the page cache may block the loop thread
/// as a write would. Errors as splice_stream(); a negative offset is `invalid_argument`.
Task<Expected<std::size_t>> splice_to_file(StreamSocket& from, int file_fd, off_t offset, std::size_t count,
                                           Timeout timeout = {});

}  // namespace galay
