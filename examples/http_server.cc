// A minimal HTTP/1.1 server on the multi-core runtime.
//
//   http_server [--port 8080] [--host 127.0.0.1] [--threads N] [--root DIR]
//               [--backend epoll|io_uring|kqueue|auto]
//
// GET / answers "hello"; GET /static/<path> sends <path> from --root with send_file
// (sendfile(2) on Linux). HEAD works for both. Keep-alive is the HTTP/1.1 default,
// `Connection: close` (and HTTP/1.0 without keep-alive) closes after the response, and
// pipelined requests are answered in order, batched into one send. Errors: 400 for a
// malformed request, 404 for an unknown path or missing file, 405 for other methods,
// 413 for a header block over 16 KiB, 501 for chunked request bodies. A request body
// with Content-Length is read and ignored. Idle connections close after 60 s.
//
// One SO_REUSEPORT listener per worker thread (serve_reuseport). SIGINT/SIGTERM stop
// accepting and give running connections 2 s before they are cancelled.
// Prints "http_server listening on ADDR ..." once it accepts, so scripts can wait for it.
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "galay-kernel/galay-kernel.h"

using namespace galay;
using namespace std::chrono_literals;

namespace {

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::size_t threads = 1;
  std::string root;
  BackendKind backend = BackendKind::automatic;
  int root_fd = -1;  // --root opened once; files are opened relative to it
};

constexpr std::size_t kMaxHeader = 16 * 1024;
constexpr auto kIdleTimeout = 60s;
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
  while (!rest.empty()) {
    const std::size_t eol = rest.find("\r\n");
    std::string_view field = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return Parse::bad;
    const std::string_view name = field.substr(0, colon);
    const std::string_view value = trim(field.substr(colon + 1));
    if (iequals(name, "connection")) {
      if (iequals(value, "close")) req.keep_alive = false;
      if (iequals(value, "keep-alive")) req.keep_alive = true;
    } else if (iequals(name, "content-length")) {
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), req.content_length);
      if (ec != std::errc{} || p != value.data() + value.size()) return Parse::bad;
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

/// One connection: read, answer every complete request in order, repeat.
Task<void> serve_http(TcpSocket conn, const Config& cfg) {
  (void)conn.set_nodelay(true);
  std::array<char, 32 * 1024> in;  // in the coroutine frame: no allocation per request
  std::size_t have = 0;
  std::size_t body_to_skip = 0;
  std::string out;
  out.reserve(4096);
  for (;;) {
    auto n = co_await conn.recv(in.data() + have, in.size() - have, kIdleTimeout);
    if (!n || *n == 0) co_return;  // EOF, reset, idle timeout or shutdown
    have += *n;
    std::size_t pos = 0;
    bool close_after = false;
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
      } else if (req.target.starts_with("/static/") && cfg.root_fd >= 0 && safe_relative_path(req.target.substr(8))) {
        const std::string rel(req.target.substr(8));
        const int fd = ::openat(cfg.root_fd, rel.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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
          if (ok && !head_only && st.st_size > 0) {
            auto body = co_await send_file(conn, fd, 0, static_cast<std::size_t>(st.st_size), kIdleTimeout);
            ok = body && *body == static_cast<std::size_t>(st.st_size);
          }
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
    if (have == in.size()) co_return;  // cannot happen with kMaxHeader < buffer; defensive
  }
}

[[noreturn]] void usage(const char* argv0, int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: %s [--port 8080] [--host 127.0.0.1] [--threads N] [--root DIR] "
               "[--backend epoll|io_uring|kqueue|auto]\n",
               argv0);
  std::exit(code);
}

Config parse_args(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage(argv[0], 2);
      return argv[++i];
    };
    auto number = [&](std::string_view v, unsigned long hi) {
      unsigned long n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc{} || p != v.data() + v.size() || n > hi) usage(argv[0], 2);
      return n;
    };
    if (a == "--help") {
      usage(argv[0], 0);
    } else if (a == "--port" || a == "-p") {
      cfg.port = static_cast<std::uint16_t>(number(value(), 65535));
    } else if (a == "--host") {
      cfg.host = std::string(value());
    } else if (a == "--threads" || a == "-t") {
      cfg.threads = number(value(), 1024);
      if (cfg.threads == 0) usage(argv[0], 2);
    } else if (a == "--root") {
      cfg.root = std::string(value());
    } else if (a == "--backend") {
      auto k = parse_backend_kind(value());
      if (!k) usage(argv[0], 2);
      cfg.backend = *k;
    } else {
      usage(argv[0], 2);
    }
  }
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
  }
  auto addr = SocketAddress::parse(cfg.host, cfg.port);
  if (!addr) {
    std::fprintf(stderr, "http_server: bad --host: %s\n", addr.error().message().c_str());
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  // Stop signals go to sigwait() below only: block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto built = Runtime::builder().threads(cfg.threads).backend(cfg.backend).build();
  if (!built) {
    std::fprintf(stderr, "http_server: cannot start the runtime: %s\n", built.error().message().c_str());
    return 1;
  }
  std::unique_ptr<Runtime> rt = std::move(*built);
  const Config* shared = &cfg;
  ConnectionHandler handler = [shared](TcpSocket c) { return serve_http(std::move(c), *shared); };
  auto server = rt->block_on(serve_reuseport(*rt, *addr, std::move(handler)));
  if (!server) {
    std::fprintf(stderr, "http_server: cannot listen on %s: %s\n", addr->to_string().c_str(),
                 server.error().message().c_str());
    return 1;
  }
  std::printf("http_server listening on %s threads=%zu backend=%s\n", server->address().to_string().c_str(), rt->size(),
              std::string(to_string(rt->backend_kind())).c_str());
  std::fflush(stdout);

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  server->stop();
  ShutdownReport report = rt->shutdown(std::chrono::seconds(2));
  std::printf("http_server stopped: %llu connections served, %zu cancelled at the deadline\n",
              static_cast<unsigned long long>(server->accepted()), report.cancelled);
  if (cfg.root_fd >= 0) ::close(cfg.root_fd);
  return 0;
}
