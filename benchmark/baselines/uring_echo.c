/*
 * uring_echo.c - minimal single-threaded io_uring TCP echo server.
 *
 * Baseline for the galay-kernel benchmarks: multishot accept, multishot recv
 * into a registered provided-buffer ring, IORING_OP_SEND straight from the
 * received buffer, batched CQE reaping and one io_uring_enter per loop turn.
 * Uses only the liburing 2.3 API.
 *
 * usage: uring_echo [port] [bind-address]     (defaults: 8080 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define QUEUE_DEPTH 4096
#define NBUFS 4096    /* provided buffers; must be a power of 2 */
#define BUF_SIZE 4096 /* bytes per provided buffer */
#define BGID 0        /* our single buffer group */
#define BACKLOG 4096

/* user_data = fd << 8 | op; fds index the connection table. */
enum { OP_IGNORE, OP_ACCEPT, OP_RECV, OP_SEND, OP_SIGNAL };
#define UD(op, fd) ((uint64_t)(uint32_t)(fd) << 8 | (op))
#define UD_OP(ud) ((int)((ud)&0xff))
#define UD_FD(ud) ((int)((ud) >> 8))

/*
 * Per-connection state, indexed by fd. Received buffers wait in a FIFO and
 * are sent one at a time: a second send in flight on the same socket could
 * be reordered against a short/retried first one.
 */
struct conn {
  int head, tail;  /* FIFO of buffer ids to send, -1 = empty */
  unsigned sent;   /* bytes of the head buffer already sent */
  int starve_next; /* link in the "waiting for buffers" list */
  unsigned char open, recv_armed, sending, eof, dead, shut, starved;
};

static struct io_uring ring;
static struct io_uring_buf_ring* br;
static char* bufs;
static unsigned buf_len[NBUFS]; /* bytes received into each buffer */
static int buf_next[NBUFS];     /* FIFO links; a buffer is in one FIFO at most */
static int nreturned;           /* buffers re-added since the last advance */

static struct conn* conns;
static size_t nconns;
static int starved = -1; /* conns whose recv stopped with ENOBUFS */

static int lfd, sfd;
static struct signalfd_siginfo siginfo;
static int stop;

static void die(const char* what, int err) {
  fprintf(stderr, "%s: %s\n", what, strerror(err));
  exit(1);
}

static struct io_uring_sqe* get_sqe(void) {
  struct io_uring_sqe* sqe;
  while (!(sqe = io_uring_get_sqe(&ring))) io_uring_submit(&ring); /* SQ full: flush and retry */
  return sqe;
}

static void arm_accept(void) {
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, UD(OP_ACCEPT, lfd));
}

static void arm_signal(void) {
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, sfd, &siginfo, sizeof siginfo, 0);
  io_uring_sqe_set_data64(sqe, UD(OP_SIGNAL, sfd));
}

static void arm_recv(int fd) {
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BGID;
  io_uring_sqe_set_data64(sqe, UD(OP_RECV, fd));
  conns[fd].recv_armed = 1;
}

static void start_send(int fd) {
  struct conn* c = &conns[fd];
  int bid = c->head;
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_send(sqe, fd, bufs + (size_t)bid * BUF_SIZE + c->sent, buf_len[bid] - c->sent, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, UD(OP_SEND, fd));
  c->sending = 1;
}

/* Hand a buffer back to the kernel; published in one advance per loop turn. */
static void return_buf(int bid) {
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid, io_uring_buf_ring_mask(NBUFS),
                        nreturned++);
}

static void release_queue(struct conn* c) {
  for (int bid = c->head; bid >= 0; bid = buf_next[bid]) return_buf(bid);
  c->head = c->tail = -1;
  c->sent = 0;
}

/*
 * Close once nothing references the connection any more: no armed recv, no
 * send in flight (the kernel may still be reading its buffer), and either an
 * error or EOF with everything echoed.
 */
static void maybe_close(int fd) {
  struct conn* c = &conns[fd];

  if (c->dead) {
    if (!c->sending) release_queue(c);
    if (c->recv_armed || c->sending) {
      /* Kick pending ops out: recv completes with 0, send with EPIPE. */
      if (!c->shut) {
        shutdown(fd, SHUT_RDWR);
        c->shut = 1;
      }
      return;
    }
  } else if (!c->eof || c->recv_armed || c->sending || c->head >= 0) {
    return;
  }

  if (c->starved) {
    int* p = &starved;
    while (*p != fd) p = &conns[*p].starve_next;
    *p = c->starve_next;
  }
  memset(c, 0, sizeof *c);
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_close(sqe, fd); /* batched with everything else */
  io_uring_sqe_set_data64(sqe, UD(OP_IGNORE, 0));
}

static void on_accept(struct io_uring_cqe* cqe) {
  int fd = cqe->res;

  if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(); /* multishot ended (e.g. after an error): re-arm */
  if (fd < 0) {
    fprintf(stderr, "accept: %s\n", strerror(-fd));
    return;
  }

  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  if ((size_t)fd >= nconns) {
    size_t n = nconns ? nconns : 1024;
    while (n <= (size_t)fd) n *= 2;
    struct conn* p = realloc(conns, n * sizeof *p);
    if (!p) die("realloc", ENOMEM);
    memset(p + nconns, 0, (n - nconns) * sizeof *p);
    conns = p;
    nconns = n;
  }
  struct conn* c = &conns[fd];
  memset(c, 0, sizeof *c);
  c->head = c->tail = -1;
  c->open = 1;
  arm_recv(fd);
}

static void on_recv(int fd, struct io_uring_cqe* cqe) {
  struct conn* c = &conns[fd];
  int res = cqe->res;

  c->recv_armed = !!(cqe->flags & IORING_CQE_F_MORE);

  if (res > 0) {
    int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (c->dead) {
      return_buf(bid);
    } else {
      buf_len[bid] = (unsigned)res;
      buf_next[bid] = -1;
      if (c->tail >= 0)
        buf_next[c->tail] = bid;
      else
        c->head = bid;
      c->tail = bid;
      if (!c->sending) start_send(fd);
      if (!c->recv_armed) arm_recv(fd); /* multishot ended without error: re-arm */
    }
  } else if (res == -ENOBUFS && !c->dead) {
    /* Ring empty: re-arm once sends have returned buffers (see loop). */
    c->starved = 1;
    c->starve_next = starved;
    starved = fd;
  } else if (res == 0) {
    c->eof = 1; /* finish echoing what is queued, then close */
  } else {
    c->dead = 1;
  }
  maybe_close(fd);
}

static void on_send(int fd, int res) {
  struct conn* c = &conns[fd];

  c->sending = 0;
  if (res <= 0) {
    c->dead = 1;
  } else if (!c->dead) {
    c->sent += (unsigned)res;
    if (c->sent == buf_len[c->head]) {
      int bid = c->head;
      c->head = buf_next[bid];
      if (c->head < 0) c->tail = -1;
      c->sent = 0;
      return_buf(bid);
    }
    /* Next buffer, or the remainder of a short send. */
    if (c->head >= 0) start_send(fd);
  }
  maybe_close(fd);
}

static void setup_ring(void) {
  /* Newest, cheapest task-work mode first; older kernels reject with EINVAL. */
  static const unsigned flag_sets[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
      IORING_SETUP_COOP_TASKRUN,
      0,
  };
  int ret = -EINVAL;
  for (size_t i = 0; i < sizeof flag_sets / sizeof *flag_sets && ret == -EINVAL; i++) {
    struct io_uring_params p = {.flags = flag_sets[i]};
    ret = io_uring_queue_init_params(QUEUE_DEPTH, &ring, &p);
  }
  if (ret < 0) die("io_uring_queue_init", -ret);
  io_uring_register_ring_fd(&ring); /* optional: skips fd lookup per enter */

  /* Provided-buffer ring: page-aligned array the kernel consumes from. */
  size_t rsize = NBUFS * sizeof(struct io_uring_buf);
  long page = sysconf(_SC_PAGESIZE);
  if (posix_memalign((void**)&br, (size_t)page, rsize) ||
      posix_memalign((void**)&bufs, (size_t)page, (size_t)NBUFS * BUF_SIZE))
    die("posix_memalign", ENOMEM);
  memset(br, 0, rsize);
  struct io_uring_buf_reg reg = {
      .ring_addr = (uint64_t)(uintptr_t)br,
      .ring_entries = NBUFS,
      .bgid = BGID,
  };
  ret = io_uring_register_buf_ring(&ring, &reg, 0);
  if (ret < 0) die("io_uring_register_buf_ring", -ret);
  io_uring_buf_ring_init(br);
  for (int i = 0; i < NBUFS; i++) return_buf(i);
  io_uring_buf_ring_advance(br, nreturned);
  nreturned = 0;
}

int main(int argc, char** argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  const char* addr = argc > 2 ? argv[2] : "127.0.0.1";

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    fprintf(stderr, "bad address: %s\n", addr);
    return 1;
  }

  /* Signals arrive as a CQE (read on a signalfd), never interrupting us. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) die("signalfd", errno);
  signal(SIGPIPE, SIG_IGN);

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket", errno);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr*)&sa, sizeof sa) < 0) die("bind", errno);
  if (listen(lfd, BACKLOG) < 0) die("listen", errno);

  setup_ring();
  arm_signal();
  arm_accept();

  fprintf(stderr, "uring_echo listening on %s:%d\n", addr, port);

  while (!stop) {
    int ret = io_uring_submit_and_wait(&ring, 1);
    if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN) die("io_uring_submit_and_wait", -ret);

    struct io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      uint64_t ud = io_uring_cqe_get_data64(cqe);
      switch (UD_OP(ud)) {
        case OP_ACCEPT:
          on_accept(cqe);
          break;
        case OP_RECV:
          on_recv(UD_FD(ud), cqe);
          break;
        case OP_SEND:
          on_send(UD_FD(ud), cqe->res);
          break;
        case OP_SIGNAL:
          stop = 1;
          break;
        default:
          break;
      }
      seen++;
    }
    io_uring_cq_advance(&ring, seen);

    if (nreturned) {
      io_uring_buf_ring_advance(br, nreturned);
      nreturned = 0;
      /* Buffers are back: restart recvs that ran dry. */
      while (starved >= 0) {
        int fd = starved;
        starved = conns[fd].starve_next;
        conns[fd].starved = 0;
        arm_recv(fd);
      }
    }
  }

  io_uring_queue_exit(&ring); /* cancels everything still in flight */
  for (size_t fd = 0; fd < nconns; fd++)
    if (conns[fd].open) close((int)fd);
  free(conns);
  free(bufs);
  free(br);
  close(lfd);
  close(sfd);
  return 0;
}
