// A minimal HTTP/1.1 server on the multi-core runtime.
//
//   http_server [--port 8080] [--host 127.0.0.1] [--threads N] [--root DIR]
//               [--backend epoll|io_uring|kqueue|auto] [--header-timeout SECONDS]
//               [--resolve auto|openat2|walk] [--tls-cert FILE --tls-key FILE]
//
// GET / answers "hello"; GET /static/<path> sends <path> from --root with send_file
// (sendfile(2) on Linux); GET /metrics gives the runtime's I/O metrics (runtime/metrics.h,
// one `worker="i"` set per worker) in Prometheus' text format. HEAD works for all three. Keep-alive is the HTTP/1.1
// default, `Connection: close` (and HTTP/1.0 without keep-alive) closes after the response, and pipelined requests are
// answered in order, batched into one send. Errors: 400 for a malformed request (including a header name that is not a
// token, RFC 9110 5.1, and Content-Length fields that disagree, RFC 9112 6.3), 404 for an unknown path or missing file,
// 405 for other methods, 408 (then close) for a header block not complete within
// --header-timeout (default 10 s) of its first byte, or of the end of the previous
// response when its first bytes came pipelined, 413 for a header block over 16 KiB, 501
// for chunked request bodies. A request body with Content-Length is read and ignored.
// Idle connections close after 60 s. A connection's input buffer starts at 1 KiB and grows
// only for a head that needs more, so a held partial request costs little memory.
//
// Static files: <path> is opened beneath --root without following a symbolic link in any
// component (a link is a 404, even one that stays inside the root): with openat2(2)'s
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the kernel has it, else by walking the path
// one openat(O_NOFOLLOW) at a time. --resolve walk forces the walk (how the checks test
// it on a kernel with openat2), --resolve openat2 refuses to start without it.
//
// HTTPS: with --tls-cert and --tls-key (PEM: the certificate chain, leaf first, and its
// unencrypted key) every accepted connection first runs a TLS server handshake (TlsStream,
// net/tls.h), which must finish within --header-timeout, then gets the same HTTP handling
// over the TLS stream; ALPN offers "http/1.1". Static files are read with pread() in
// 64 KiB pieces and encrypted (no sendfile under TLS). A connection that ends sends
// close_notify first. Without the flags nothing changes: plain HTTP on the socket. A build
// without TLS (GALAY_KERNEL_WITH_TLS off) refuses the flags (exit 2).
//
// One SO_REUSEPORT listener per worker thread (serve_reuseport). SIGINT/SIGTERM stop
// accepting and give running connections 2 s before they are cancelled: a task on a worker
// awaits them with a SignalSet (main blocks them before any thread starts, so every thread
// inherits the mask and signalfd sees them).
// Prints "http_server listening on ADDR ..." once it accepts, so scripts can wait for it.
// Exit status 0 after a signal, 1 if it cannot start, listen or wait for the signals, 2 on a
// bad command line.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__linux__) && defined(SYS_openat2) && __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HTTP_SERVER_HAVE_OPENAT2 1
#endif

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "args.h"  // the programs' shared command-line parser (support/args.h)
#include "galay-kernel/galay-kernel.h"

using namespace galay;
using namespace std::chrono_literals;

namespace {

/// How a static path is opened beneath --root.
enum class Resolve { automatic, openat2, walk };

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::size_t threads = 1;
  std::string root;
  BackendKind backend = BackendKind::automatic;
  double header_timeout_s = 10;
  Resolve resolve = Resolve::automatic;  // after start-up: openat2 or walk
  int root_fd = -1;                      // --root opened once; files are opened relative to it
  std::string tls_cert, tls_key;         // --tls-cert, --tls-key: serve HTTPS
#if GALAY_KERNEL_WITH_TLS
  TlsContext tls;  // made from them at start-up; valid() means HTTPS
#endif
};

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxHeader = 16 * 1024;
constexpr std::size_t kFirstBuffer = 1024;     // a connection's input buffer to start with
constexpr std::size_t kMaxBuffer = 32 * 1024;  // and at most (more than kMaxHeader: see serve_http)
constexpr auto kIdleTimeout = 60s;
constexpr auto kLastWordTimeout = 1s;  // for a 408 to a client that may not be reading
constexpr std::string_view kHello = "hello";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// A header field name must be a token (RFC 9110 5.6.2): visible ASCII except delimiters.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(ch) == std::string_view::npos) return false;
  }
  return true;
}

/// One parsed request head.
struct Request {
  std::string_view method, target;
  bool http10 = false;
  bool keep_alive = true;
  bool chunked = false;
  std::size_t content_length = 0;
};

enum class Parse { ok, incomplete, bad, too_large };

/// Parse the head at the start of `in`; on ok, `head_len` is its length with the blank line.
Parse parse_head(std::string_view in, Request& req, std::size_t& head_len) {
  const std::size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return in.size() > kMaxHeader ? Parse::too_large : Parse::incomplete;
  if (end > kMaxHeader) return Parse::too_large;
  head_len = end + 4;
  std::string_view head = in.substr(0, end);
  const std::size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return Parse::bad;
  req.method = line.substr(0, sp1);
  req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    req.http10 = false;
  } else if (version == "HTTP/1.0") {
    req.http10 = true;
  } else {
    return Parse::bad;
  }
  if (req.method.empty() || req.target.empty() || req.target.front() != '/') return Parse::bad;
  req.keep_alive = !req.http10;
  std::string_view rest = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  bool have_length = false;
  while (!rest.empty()) {
    const std::size_t eol = rest.find("\r\n");
    std::string_view field = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos) return Parse::bad;
    const std::string_view name = field.substr(0, colon);
    if (!is_token(name)) return Parse::bad;  // also "Name :" and obs-fold continuation lines
    const std::string_view value = trim(field.substr(colon + 1));
    if (iequals(name, "connection")) {
      if (iequals(value, "close")) req.keep_alive = false;
      if (iequals(value, "keep-alive")) req.keep_alive = true;
    } else if (iequals(name, "content-length")) {
      std::size_t length = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (ec != std::errc{} || p != value.data() + value.size()) return Parse::bad;
      // Repeated fields may only repeat the same length (RFC 9112 6.3).
      if (have_length && length != req.content_length) return Parse::bad;
      req.content_length = length;
      have_length = true;
    } else if (iequals(name, "transfer-encoding")) {
      req.chunked = true;
    }
  }
  return Parse::ok;
}

/// A path below --root: segments of [A-Za-z0-9._-], none of them "." or "..".
bool safe_relative_path(std::string_view p) {
  if (p.empty()) return false;
  std::size_t start = 0;
  while (start <= p.size()) {
    std::size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    const std::string_view seg = p.substr(start, slash - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    for (char c : seg)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
    start = slash + 1;
  }
  return true;
}

void append_head(std::string& out, std::string_view status, std::size_t length, bool keep_alive,
                 std::string_view type = "text/plain") {
  out += "HTTP/1.1 ";
  out += status;
  out += "\r\nServer: galay-kernel\r\nContent-Type: ";
  out += type;
  out += "\r\nContent-Length: ";
  char num[24];
  auto [end, ec] = std::to_chars(num, num + sizeof num, length);
  (void)ec;
  out.append(num, end);
  out += keep_alive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
}

void append_error(std::string& out, std::string_view status, bool keep_alive) {
  append_head(out, status, status.size() + 1, keep_alive);
  out += status;
  out += '\n';
}

#ifdef HTTP_SERVER_HAVE_OPENAT2
/// openat2(2) beneath `dir` with no symlink anywhere on the way; -1 with errno on failure.
int openat2_beneath(int dir, const char* path, int flags) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dir, path, &how, sizeof how));
}
#endif

/// Whether openat2 works here: a kernel before 5.6 (or a seccomp filter) says ENOSYS.
bool have_openat2([[maybe_unused]] int root_fd) {
#ifdef HTTP_SERVER_HAVE_OPENAT2
  const int fd = openat2_beneath(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
  return fd >= 0 || (errno != ENOSYS && errno != EPERM);
#else
  return false;
#endif
}

/// Open `rel` (already checked by safe_relative_path) for reading beneath `root_fd`,
/// following no symbolic link in any component; -1 with errno on failure. O_NONBLOCK so a
/// FIFO cannot block the loop (the caller serves regular files only).
int open_beneath(int root_fd, const std::string& rel, Resolve how) {
  constexpr int kFileFlags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
#ifdef HTTP_SERVER_HAVE_OPENAT2
  if (how == Resolve::openat2) return openat2_beneath(root_fd, rel.c_str(), kFileFlags);
#else
  (void)how;
#endif
  // The walk: one openat per component, each refusing a symlink (O_NOFOLLOW: ELOOP), each
  // directory opened relative to the one before; ".." never appears (safe_relative_path).
  int dir = root_fd;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = rel.find('/', start);
    const std::string part = rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    const int fd = slash == std::string::npos
                       ? ::openat(dir, part.c_str(), kFileFlags)
                       : ::openat(dir, part.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY);
    if (dir != root_fd) {
      const int saved = errno;
      ::close(dir);
      errno = saved;
    }
    if (fd < 0 || slash == std::string::npos) return fd;
    dir = fd;
    start = slash + 1;
  }
}

/// A connection's input: kFirstBuffer bytes at first, doubled up to kMaxBuffer only while
/// one request head needs the room, back to kFirstBuffer once the connection is idle.
class InputBuffer {
 public:
  char* data() noexcept { return bytes_.get(); }
  std::size_t size() const noexcept { return size_; }
  /// Double the buffer keeping its first `used` bytes; false at kMaxBuffer.
  bool grow(std::size_t used) {
    if (size_ >= kMaxBuffer) return false;
    reallocate(std::min(size_ * 2, kMaxBuffer), used);
    return true;
  }
  /// Drop a grown buffer when it holds nothing.
  void shrink_if_empty(std::size_t used) {
    if (used == 0 && size_ > kFirstBuffer) reallocate(kFirstBuffer, 0);
  }

 private:
  void reallocate(std::size_t size, std::size_t used) {
    auto bigger = std::make_unique_for_overwrite<char[]>(size);
    std::memcpy(bigger.get(), bytes_.get(), used);
    bytes_ = std::move(bigger);
    size_ = size;
  }
  std::unique_ptr<char[]> bytes_ = std::make_unique_for_overwrite<char[]>(kFirstBuffer);
  std::size_t size_ = kFirstBuffer;
};

/// The answer to a request head that missed its deadline; the connection closes after it.
template <class Stream>
Task<void> send_request_timeout(Stream& conn) {
  std::string out;
  append_error(out, "408 Request Timeout", false);
  (void)co_await conn.send_all(out, kLastWordTimeout);
}

/// The body of a static file: sendfile(2) on a plain socket; under TLS, pread() pieces
/// encrypted and sent in turn. False if it could not all be sent.
template <class Stream>
Task<bool> send_file_body(Stream& conn, int fd, std::size_t size) {
  if constexpr (std::is_same_v<Stream, TcpSocket>) {
    auto body = co_await send_file(conn, fd, 0, size, kIdleTimeout);
    co_return body&&* body == size;
  } else {
    constexpr std::size_t kPiece = 64 * 1024;
    auto piece = std::make_unique_for_overwrite<char[]>(std::min(size, kPiece));
    for (std::size_t off = 0; off < size;) {
      const ssize_t n = ::pread(fd, piece.get(), std::min(size - off, kPiece), static_cast<off_t>(off));
      if (n <= 0) co_return false;  // an error, or the file shrank
      auto sent = co_await conn.send_all(std::string_view(piece.get(), static_cast<std::size_t>(n)), kIdleTimeout);
      if (!sent) co_return false;
      off += static_cast<std::size_t>(n);
    }
    co_return true;
  }
}

/// One connection over a TcpSocket or a TlsStream after its handshake: read, answer every
/// complete request in order, repeat.
template <class Stream>
Task<void> serve_stream(Stream& conn, const Config& cfg) {
  const auto header_timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.header_timeout_s));
  InputBuffer in;
  std::size_t have = 0;
  std::size_t body_to_skip = 0;
  std::string out;
  // Set while part of a request head is buffered: the head must be complete by then.
  std::optional<Clock::time_point> head_deadline;
  for (;;) {
    Timeout limit = kIdleTimeout;
    if (head_deadline) {
      const auto left = *head_deadline - Clock::now();
      if (left <= Clock::duration::zero()) {
        co_await send_request_timeout(conn);
        co_return;
      }
      limit = std::min<Clock::duration>(left, kIdleTimeout);
    }
    auto n = co_await conn.recv(in.data() + have, in.size() - have, limit);
    if (!n && n.error() == std::errc::timed_out && head_deadline && Clock::now() >= *head_deadline) {
      co_await send_request_timeout(conn);
      co_return;
    }
    if (!n || *n == 0) co_return;  // EOF, reset, idle timeout or shutdown
    have += *n;
    std::size_t pos = 0;
    bool close_after = false;
    bool answered = false;  // a request was parsed: bytes left over start the next one
    while (!close_after) {
      if (body_to_skip > 0) {  // a request body we ignore
        const std::size_t skip = std::min(body_to_skip, have - pos);
        pos += skip;
        body_to_skip -= skip;
        if (body_to_skip > 0) break;
      }
      Request req;
      std::size_t head_len = 0;
      const Parse parsed = parse_head(std::string_view(in.data() + pos, have - pos), req, head_len);
      if (parsed == Parse::incomplete) break;
      if (parsed == Parse::bad || parsed == Parse::too_large) {
        append_error(out, parsed == Parse::bad ? "400 Bad Request" : "413 Content Too Large", false);
        close_after = true;
        break;
      }
      answered = true;
      pos += head_len;
      body_to_skip = req.content_length;
      const bool head_only = req.method == "HEAD";
      if (req.chunked) {
        append_error(out, "501 Not Implemented", false);
        close_after = true;
      } else if (req.method != "GET" && !head_only) {
        append_error(out, "405 Method Not Allowed", false);
        close_after = true;
      } else if (req.target == "/") {
        append_head(out, "200 OK", kHello.size(), req.keep_alive);
        if (!head_only) out += kHello;
      } else if (req.target == "/metrics") {
        // The runtime's I/O metrics in Prometheus' text format, one labelled set per worker
        // (sum them in the query: sum without (worker) (...)).
        std::string body;
        if (const Runtime* rt = Runtime::current()) {
          std::vector<std::string> labels(rt->size());
          std::vector<LabeledMetrics> workers(rt->size());
          for (std::size_t i = 0; i < rt->size(); ++i) {
            labels[i] = "worker=\"" + std::to_string(i) + '"';
            workers[i] = {labels[i], rt->scheduler(i).metrics()};
          }
          body = format_prometheus(workers, "galay");
        }
        append_head(out, "200 OK", body.size(), req.keep_alive, "text/plain; version=0.0.4; charset=utf-8");
        if (!head_only) out += body;
      } else if (req.target.starts_with("/static/") && cfg.root_fd >= 0 && safe_relative_path(req.target.substr(8))) {
        const int fd = open_beneath(cfg.root_fd, std::string(req.target.substr(8)), cfg.resolve);
        struct stat st {};
        if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
          if (fd >= 0) ::close(fd);
          append_error(out, "404 Not Found", req.keep_alive);
        } else {
          // Flush what is queued, then the header, then the file straight from the page cache.
          append_head(out, "200 OK", static_cast<std::size_t>(st.st_size), req.keep_alive, "application/octet-stream");
          auto sent = co_await conn.send_all(out, kIdleTimeout);
          out.clear();
          bool ok = sent.has_value();
          if (ok && !head_only && st.st_size > 0)
            ok = co_await send_file_body(conn, fd, static_cast<std::size_t>(st.st_size));
          ::close(fd);
          if (!ok) co_return;
        }
      } else {
        append_error(out, "404 Not Found", req.keep_alive);
      }
      if (!req.keep_alive) close_after = true;
    }
    if (!out.empty()) {
      auto sent = co_await conn.send_all(out, kIdleTimeout);
      out.clear();
      if (!sent) co_return;
    }
    if (close_after) co_return;  // the socket closes as the frame ends
    // Keep the unparsed tail at the front of the buffer.
    if (pos > 0) {
      std::memmove(in.data(), in.data() + pos, have - pos);
      have -= pos;
    }
    // The header deadline: from the first byte of a head, or from now (the end of the
    // responses) for a head whose first bytes came with the previous request.
    if (body_to_skip == 0 && have > 0) {
      if (!head_deadline || answered) head_deadline = Clock::now() + header_timeout;
    } else {
      head_deadline.reset();
    }
    in.shrink_if_empty(have);
    // A full buffer holds an incomplete head of at most kMaxHeader bytes (more would have
    // been a 413), so it can grow.
    if (have == in.size() && !in.grow(have)) co_return;  // cannot happen: kMaxBuffer > kMaxHeader
  }
}

/// A plain HTTP connection.
Task<void> serve_http(TcpSocket conn, const Config& cfg) {
  (void)conn.set_nodelay(true);
  co_await serve_stream(conn, cfg);
}

#if GALAY_KERNEL_WITH_TLS
/// An HTTPS connection: the TLS handshake within --header-timeout, HTTP over the stream,
/// then close_notify (not waiting for the client's).
Task<void> serve_https(TcpSocket conn, const Config& cfg) {
  auto tls = TlsStream::server(cfg.tls, std::move(conn));  // also turns Nagle off
  if (!tls) co_return;
  const auto handshake_timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.header_timeout_s));
  if (!co_await tls->handshake(handshake_timeout)) co_return;  // not TLS, no shared cipher, too slow...
  co_await serve_stream(*tls, cfg);
  (void)co_await tls->shutdown(kLastWordTimeout);
}

/// The server context from --tls-cert/--tls-key, ALPN "http/1.1"; prints why not.
bool make_tls_context(Config& cfg) {
  auto ctx = TlsContext::create(TlsRole::server);
  if (!ctx) {
    std::fprintf(stderr, "http_server: cannot create a TLS context: %s\n", ctx.error().message().c_str());
    return false;
  }
  if (auto r = ctx->use_certificate_chain_file(cfg.tls_cert); !r) {
    std::fprintf(stderr, "http_server: --tls-cert %s: %s\n", cfg.tls_cert.c_str(), r.error().message().c_str());
    return false;
  }
  if (auto r = ctx->use_private_key_file(cfg.tls_key); !r) {
    std::fprintf(stderr, "http_server: --tls-key %s: %s\n", cfg.tls_key.c_str(), r.error().message().c_str());
    return false;
  }
  if (auto r = ctx->set_alpn({"http/1.1"}); !r) {
    std::fprintf(stderr, "http_server: ALPN: %s\n", r.error().message().c_str());
    return false;
  }
  cfg.tls = std::move(*ctx);
  return true;
}
#endif

/// Wait for SIGINT or SIGTERM, then stop accepting; the signal number, or 0 if the wait
/// failed (printed).
Task<int> stop_on_signal(Server* server) {
  auto signals = SignalSet::create({SIGINT, SIGTERM});
  if (!signals) {
    std::fprintf(stderr, "http_server: cannot watch SIGINT/SIGTERM: %s\n", signals.error().message().c_str());
    co_return 0;
  }
  auto sig = co_await signals->wait();
  if (!sig) {
    std::fprintf(stderr, "http_server: waiting for SIGINT/SIGTERM: %s\n", sig.error().message().c_str());
    co_return 0;
  }
  server->stop();
  co_return *sig;
}

Config parse_args(int argc, char** argv) {
  Config cfg;
  cli::Parser args("http_server", "[options]");
  args.integer("-p, --port", "PORT", "TCP port, 0 for any free one (default 8080)", cfg.port, 0, 65535)
      .host(cfg.host)
      .integer("-t, --threads", "N", "worker threads, one listener each (default 1)", cfg.threads, 1, 1024)
      .text("--root", "DIR", "serve DIR's files under /static/ (default: none)", cfg.root)
      .backend(cfg.backend)
      .real("--header-timeout", "SECONDS", "a request head must arrive within this (default 10)", cfg.header_timeout_s,
            0, 3600, /*open_low=*/true)
      .choice("--resolve", "HOW",
              "opening files beneath --root: auto (openat2 where the kernel has it, else walk),\n"
              "openat2, or walk (openat(O_NOFOLLOW) per component)",
              cfg.resolve, {{"auto", Resolve::automatic}, {"openat2", Resolve::openat2}, {"walk", Resolve::walk}})
      .text("--tls-cert", "FILE", "serve HTTPS with this PEM certificate chain (leaf first; needs --tls-key)",
            cfg.tls_cert)
      .text("--tls-key", "FILE", "the PEM private key of --tls-cert", cfg.tls_key);
  args.parse(argc, argv);
  if (cfg.tls_cert.empty() != cfg.tls_key.empty())
    args.fail(cfg.tls_cert.empty() ? "--tls-key: needs --tls-cert" : "--tls-cert: needs --tls-key");
  if (!GALAY_KERNEL_WITH_TLS && !cfg.tls_cert.empty())
    args.fail("--tls-cert: this build has no TLS (configured with GALAY_KERNEL_WITH_TLS=OFF or without OpenSSL 3)");
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
  if (!cfg.root.empty()) {
    cfg.root_fd = ::open(cfg.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cfg.root_fd < 0) {
      std::fprintf(stderr, "http_server: --root %s: %s\n", cfg.root.c_str(), std::strerror(errno));
      return 1;
    }
    const bool openat2_works = have_openat2(cfg.root_fd);
    if (cfg.resolve == Resolve::openat2 && !openat2_works) {
      std::fprintf(stderr, "http_server: --resolve openat2: openat2(2) is not available here\n");
      return 1;
    }
    if (cfg.resolve == Resolve::automatic) cfg.resolve = openat2_works ? Resolve::openat2 : Resolve::walk;
  }
#if GALAY_KERNEL_WITH_TLS
  if (!cfg.tls_cert.empty() && !make_tls_context(cfg)) return 1;
#endif
  auto addr = SocketAddress::parse(cfg.host, cfg.port);  // checked by parse_args
  if (!addr) {
    std::fprintf(stderr, "http_server: bad --host: %s\n", addr.error().message().c_str());
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  // The stop signals go to stop_on_signal()'s SignalSet only: block them before any thread
  // (the runtime's workers, the backends' helper threads) starts, so all of them inherit it.
  if (auto blocked = block_signals({SIGINT, SIGTERM}); !blocked) {
    std::fprintf(stderr, "http_server: cannot block SIGINT/SIGTERM: %s\n", blocked.error().message().c_str());
    return 1;
  }

  auto built = Runtime::builder().threads(cfg.threads).backend(cfg.backend).build();
  if (!built) {
    std::fprintf(stderr, "http_server: cannot start the runtime: %s\n", built.error().message().c_str());
    return 1;
  }
  std::unique_ptr<Runtime> rt = std::move(*built);
  const Config* shared = &cfg;
  ConnectionHandler handler = [shared](TcpSocket c) { return serve_http(std::move(c), *shared); };
#if GALAY_KERNEL_WITH_TLS
  if (cfg.tls.valid()) handler = [shared](TcpSocket c) { return serve_https(std::move(c), *shared); };
#endif
  auto server = rt->block_on(serve_reuseport(*rt, *addr, std::move(handler)));
  if (!server) {
    std::fprintf(stderr, "http_server: cannot listen on %s: %s\n", addr->to_string().c_str(),
                 server.error().message().c_str());
    return 1;
  }
  std::printf("http_server listening on %s threads=%zu backend=%s header-timeout=%gs",
              server->address().to_string().c_str(), rt->size(), std::string(to_string(rt->backend_kind())).c_str(),
              cfg.header_timeout_s);
  if (cfg.root_fd >= 0)
    std::printf(" root=%s resolve=%s", cfg.root.c_str(), cfg.resolve == Resolve::openat2 ? "openat2" : "walk");
  if (!cfg.tls_cert.empty()) std::printf(" tls alpn=http/1.1");
  std::printf("\n");
  std::fflush(stdout);

  // Runs on a worker until SIGINT/SIGTERM arrives; then the graceful shutdown below.
  const int sig = rt->block_on(stop_on_signal(&*server));
  server->stop();  // also when the wait failed
  ShutdownReport report = rt->shutdown(std::chrono::seconds(2));
  std::printf("http_server stopped: %llu connections served, %zu cancelled at the deadline\n",
              static_cast<unsigned long long>(server->accepted()), report.cancelled);
  if (cfg.root_fd >= 0) ::close(cfg.root_fd);
  return sig != 0 ? 0 : 1;
}
