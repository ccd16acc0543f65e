/*
 * epoll_echo.c - minimal single-threaded edge-triggered epoll TCP echo server.
 *
 * Baseline for the galay-kernel benchmarks: the straightforward, efficient
 * thing a C programmer writes by hand with epoll.
 *
 * usage: epoll_echo [port] [bind-address]     (defaults: 8080 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define BACKLOG 4096
#define READ_BUF (64 * 1024)

/*
 * Per-connection state, indexed by fd. Data is read into one shared buffer and
 * echoed immediately; only bytes the kernel would not take are copied into
 * the connection's own (lazily allocated) pending buffer.
 */
struct conn {
  char* pend;      /* READ_BUF bytes once needed, else NULL */
  size_t off, len; /* unsent bytes are pend[off .. off+len) */
  int open;
};

static struct conn* conns;
static size_t nconns;
static char rbuf[READ_BUF];
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static struct conn* conn_get(int fd) {
  if ((size_t)fd >= nconns) {
    size_t n = nconns ? nconns : 1024;
    while (n <= (size_t)fd) n *= 2;
    struct conn* p = realloc(conns, n * sizeof *p);
    if (!p) die("realloc");
    memset(p + nconns, 0, (n - nconns) * sizeof *p);
    conns = p;
    nconns = n;
  }
  return &conns[fd];
}

static void conn_close(int fd) {
  struct conn* c = &conns[fd];
  free(c->pend);
  memset(c, 0, sizeof *c);
  close(fd); /* also removes it from the epoll set */
}

/* Send as much of buf as the socket takes; returns bytes sent or -1 on error. */
static ssize_t send_some(int fd, const char* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);
    if (n > 0)
      done += (size_t)n;
    else if (n < 0 && errno == EINTR)
      continue;
    else if (n < 0 && errno == EAGAIN)
      break;
    else
      return -1;
  }
  return (ssize_t)done;
}

/*
 * Called on any readiness edge (EPOLLIN or EPOLLOUT). First flush what is
 * pending; only then read more, so a slow reader throttles its own sender
 * through TCP flow control instead of growing our buffers.
 * Returns -1 if the connection must be closed.
 */
static int conn_io(int fd) {
  struct conn* c = &conns[fd];

  if (c->len) {
    ssize_t n = send_some(fd, c->pend + c->off, c->len);
    if (n < 0) return -1;
    c->off += (size_t)n;
    c->len -= (size_t)n;
    if (c->len) return 0; /* still blocked: wait for the next EPOLLOUT edge */
  }

  for (;;) {
    ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
    if (n == 0) return -1; /* EOF */
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -1;
    }

    ssize_t s = send_some(fd, rbuf, (size_t)n);
    if (s < 0) return -1;
    if (s < n) {
      /* Socket buffer full: park the rest, resume on EPOLLOUT. */
      if (!c->pend && !(c->pend = malloc(READ_BUF))) return -1;
      c->off = 0;
      c->len = (size_t)(n - s);
      memcpy(c->pend, rbuf + s, c->len);
      return 0;
    }

    /*
     * A short read means the receive queue was drained; any later data
     * raises a new EPOLLIN edge, so skip the recv() that would only
     * return EAGAIN (nginx does the same). Saves a syscall per message.
     */
    if ((size_t)n < sizeof rbuf) return 0;
  }
}

static void accept_all(int lfd, int ep) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) perror("accept4"); /* e.g. EMFILE: retried on next edge */
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_get(fd)->open = 1;

    /*
     * Register IN|OUT edge-triggered once. With ET, EPOLLOUT only fires
     * when send space frees up after the buffer was full, so it costs
     * nothing in the common case and saves the two epoll_ctl(MOD) calls
     * per partial write that toggling EPOLLOUT would need.
     */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
      perror("epoll_ctl");
      conn_close(fd);
    }
    /* No initial read needed: EPOLL_CTL_ADD reports data already queued. */
  }
}

int main(int argc, char** argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  const char* addr = argc > 2 ? argv[2] : "127.0.0.1";

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    fprintf(stderr, "bad address: %s\n", addr);
    return 1;
  }

  /*
   * SIGINT/SIGTERM stay blocked except inside epoll_pwait, so a signal can
   * never slip in between checking `stop` and going to sleep.
   */
  sigset_t block, waitmask;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGINT);
  sigdelset(&waitmask, SIGTERM);
  struct sigaction act = {.sa_handler = on_signal};
  sigaction(SIGINT, &act, NULL);
  sigaction(SIGTERM, &act, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr*)&sa, sizeof sa) < 0) die("bind");
  if (listen(lfd, BACKLOG) < 0) die("listen");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl");

  fprintf(stderr, "epoll_echo listening on %s:%d\n", addr, port);

  struct epoll_event evs[MAX_EVENTS];
  while (!stop) {
    int n = epoll_pwait(ep, evs, MAX_EVENTS, -1, &waitmask);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_pwait");
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        accept_all(lfd, ep);
        continue;
      }
      /* Pure "writable again" with nothing pending: nothing to do. */
      if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !conns[fd].len) continue;
      if (conn_io(fd) < 0) /* errors/HUP surface as recv/send failures */
        conn_close(fd);
    }
  }

  for (size_t fd = 0; fd < nconns; fd++)
    if (conns[fd].open) conn_close((int)fd);
  free(conns);
  close(ep);
  close(lfd);
  return 0;
}
