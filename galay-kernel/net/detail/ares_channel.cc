#include "galay-kernel/net/detail/ares_channel.h"

#include <ares.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <variant>

#include "galay-kernel/net/tcp_socket.h"
#include "galay-kernel/net/udp_socket.h"
#include "galay-kernel/coro/cancel.h"
#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/runtime/sleep.h"

namespace galay::detail {
namespace {

class QueryAwaiter;

// One ares_getaddrinfo in flight.
struct Query {
  AresChannel* channel = nullptr;
  QueryAwaiter* awaiter = nullptr;  // the suspended awaiter, if any
  std::uint16_t port = 0;
  bool done = false;       // the callback has run (status/addresses are set)
  bool abandoned = false;  // nobody waits any more: the callback frees the record
  int status = ARES_SUCCESS;
  std::vector<SocketAddress> addresses;
};

std::error_code status_error(int status) noexcept {
  switch (status) {
    case ARES_ENOTFOUND:
      return make_error_code(ResolveError::no_such_host);
    case ARES_ENODATA:
      return make_error_code(ResolveError::no_address);
    case ARES_ESERVFAIL:
      return make_error_code(ResolveError::server_failure);
    case ARES_EREFUSED:
      return make_error_code(ResolveError::query_refused);
    case ARES_ECONNREFUSED:
      return make_error_code(ResolveError::connection_refused);
    case ARES_ETIMEOUT:
      return make_error_code(ResolveError::timed_out);
    case ARES_EBADNAME:
      return make_error_code(ResolveError::bad_name);
    case ARES_ESERVICE:
      return make_error_code(ResolveError::bad_service);
    case ARES_EFORMERR:
    case ARES_EBADRESP:
      return make_error_code(ResolveError::bad_response);
    case ARES_ENOTIMP:
      return make_error_code(ResolveError::not_implemented);
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return make_error_code(ResolveError::cancelled);
    default:
      return make_error_code(ResolveError::resolver_failure);
  }
}

int address_family(IpFamily f) noexcept {
  switch (f) {
    case IpFamily::ipv4:
      return AF_INET;
    case IpFamily::ipv6:
      return AF_INET6;
    case IpFamily::any:
      break;
  }
  return AF_UNSPEC;
}

}  // namespace

class AresChannel : public std::enable_shared_from_this<AresChannel> {
 public:
  explicit AresChannel(Scheduler* sched) noexcept : sched_(sched) {}
  AresChannel(const AresChannel&) = delete;
  AresChannel& operator=(const AresChannel&) = delete;
  ~AresChannel();

  std::error_code init(const ResolverOptions& o);
  // ares_getaddrinfo for `q` (which may be answered before this returns).
  void start(Query& q, const std::string& host, IpFamily family);
  // The caller of `q` stops waiting. `settle_now`: also cancel what nobody wants any more
  // (false from a destructor, where calling into c-ares is not wanted).
  void abandon(Query* q, bool settle_now) noexcept;

 private:
  struct Watch {
    JoinHandle<void> task;
    std::uint64_t gen = 0;
    bool wanted = false;
  };
  struct Entry {
    std::variant<UdpSocket, TcpSocket> sock;
    std::uint64_t id = 0;
    Watch read, write;
    Socket& socket() noexcept {
      return std::visit([](auto& s) -> Socket& { return s; }, sock);
    }
  };

  // c-ares's socket functions and callbacks; `self` is the AresChannel.
  static ares_socket_t on_socket(int domain, int type, int protocol, void* self) noexcept;
  static int on_close(ares_socket_t fd, void* self) noexcept;
  static int on_connect(ares_socket_t fd, const sockaddr* addr, ares_socklen_t len, void* self) noexcept;
  static ares_ssize_t on_recvfrom(ares_socket_t fd, void* buf, std::size_t len, int flags, sockaddr* from,
                                  ares_socklen_t* fromlen, void* self) noexcept;
  static ares_ssize_t on_sendv(ares_socket_t fd, const iovec* iov, int iovcnt, void* self) noexcept;
  static void on_sock_state(void* self, ares_socket_t fd, int readable, int writable) noexcept;
  static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* ai) noexcept;

  static Task<void> watch(std::shared_ptr<AresChannel> self, int fd, std::uint64_t id, bool write, std::uint64_t gen);
  static Task<void> timer(std::shared_ptr<AresChannel> self, Clock::time_point deadline, std::uint64_t gen);

  Entry* find(int fd, std::uint64_t id) noexcept {
    auto it = sockets_.find(fd);
    return it == sockets_.end() || it->second.id != id ? nullptr : &it->second;
  }
  void set_watch(Entry& e, int fd, bool write, bool wanted);
  // ares_process_fd, then settle().
  void process(ares_socket_t read_fd, ares_socket_t write_fd);
  // After a call into c-ares: cancel abandoned queries nobody needs the channel for, and
  // re-arm the timer for the earliest try that can run out.
  void settle() noexcept;
  void arm_timer() noexcept;
  void disarm_timer() noexcept;

  static const ares_socket_functions kSocketFunctions;

  Scheduler* sched_;
  ares_channel channel_ = nullptr;
  std::unordered_map<int, Entry> sockets_;
  std::uint64_t next_id_ = 0;
  int depth_ = 0;                // calls into c-ares on the stack (settle() waits for 0)
  std::size_t outstanding_ = 0;  // ares_getaddrinfo calls not yet called back
  std::size_t wanted_ = 0;       // of those, the ones a caller still waits for
  bool destroying_ = false;
  bool envhosts_ = false;
  JoinHandle<void> timer_task_;
  std::uint64_t timer_gen_ = 0;
  bool timer_armed_ = false;
  Clock::time_point timer_deadline_{};
};

namespace {

// co_await on a Query: resumes when c-ares calls back, or early when the task's scope is
// cancelled (the query is then abandoned, see AresChannel::abandon).
class QueryAwaiter final : public Cancellable {
 public:
  explicit QueryAwaiter(std::unique_ptr<Query> q) noexcept : q_(std::move(q)) {}
  QueryAwaiter(const QueryAwaiter&) = delete;
  QueryAwaiter& operator=(const QueryAwaiter&) = delete;
  // Destroyed while c-ares still owes the answer (the frame is torn down, e.g. by
  // Scheduler::shutdown): hand the record to the callback without calling into c-ares.
  ~QueryAwaiter() {
    if (q_ && !q_->done) {
      Query* q = q_.release();
      q->channel->abandon(q, false);
    }
  }

  bool await_ready() const noexcept { return q_->done; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    scope_ = scope_of(h.promise());
    if (scope_ != nullptr && scope_->cancelled()) {
      reason_ = scope_->reason();
      drop();
      return false;
    }
    waiter_ = h;
    sched_ = Scheduler::current();
    q_->awaiter = this;
    if (scope_ != nullptr) scope_->set_pending(this);
    return true;
  }
  Expected<std::vector<SocketAddress>> await_resume() noexcept {
    if (reason_ != std::errc{}) return Unexpected(std::make_error_code(reason_));
    if (q_->status != ARES_SUCCESS) return Unexpected(status_error(q_->status));
    if (q_->addresses.empty()) return Unexpected(make_error_code(ResolveError::no_address));
    return std::move(q_->addresses);
  }

  // The scope was cancelled: stop waiting now; c-ares's answer, if it still comes, is dropped.
  void cancel(std::errc reason) noexcept override {
    if (!q_ || q_->done) return;
    reason_ = reason;
    if (scope_ != nullptr) scope_->clear_pending(this);
    drop();
    sched_->schedule(waiter_);
  }
  // c-ares called back (q_->done is set).
  void complete() noexcept {
    if (scope_ != nullptr) scope_->clear_pending(this);
    sched_->schedule(waiter_);
  }

 private:
  void drop() noexcept {
    Query* q = q_.release();
    q->awaiter = nullptr;
    q->channel->abandon(q, true);  // may free q (ares_cancel calls back at once)
  }

  std::unique_ptr<Query> q_;
  std::coroutine_handle<> waiter_;
  Scheduler* sched_ = nullptr;
  CancelScope* scope_ = nullptr;
  std::errc reason_{};
};

}  // namespace

const ares_socket_functions AresChannel::kSocketFunctions = {
    &AresChannel::on_socket,   &AresChannel::on_close, &AresChannel::on_connect,
    &AresChannel::on_recvfrom, &AresChannel::on_sendv,
};

AresChannel::~AresChannel() {
  // Nothing may be spawned or cancelled from here: the tasks that could be are gone (they
  // hold this channel). ares_destroy calls back every abandoned query (freeing it) and
  // closes the sockets through on_close.
  destroying_ = true;
  if (channel_ != nullptr) ares_destroy(channel_);
  sockets_.clear();
}

std::error_code AresChannel::init(const ResolverOptions& o) {
  static const int library = ares_library_init(ARES_LIB_INIT_ALL);
  if (library != ARES_SUCCESS) return make_error_code(ResolveError::resolver_failure);

  ares_options opts{};
  int mask = 0;
  // Report SERVFAIL/REFUSED/NOTIMP answers as such (c-ares would otherwise retry them and
  // end with ECONNREFUSED, which names the wrong cause).
  opts.flags = ARES_FLAG_NOCHECKRESP;
  mask |= ARES_OPT_FLAGS;
  opts.sock_state_cb = &AresChannel::on_sock_state;
  opts.sock_state_cb_data = this;
  mask |= ARES_OPT_SOCK_STATE_CB;
  if (o.attempt_timeout.count() > 0) {
    opts.timeout = static_cast<int>(std::min<std::chrono::milliseconds::rep>(o.attempt_timeout.count(), 1 << 30));
    mask |= ARES_OPT_TIMEOUTMS;
  }
  if (o.tries > 0) {
    opts.tries = o.tries;
    mask |= ARES_OPT_TRIES;
  }
  char lookups_files[] = "fb";
  char lookups_dns[] = "b";
  opts.lookups = o.use_hosts_file ? lookups_files : lookups_dns;
  mask |= ARES_OPT_LOOKUPS;
  if (!o.use_search_domains) {
    opts.domains = nullptr;
    opts.ndomains = 0;
    mask |= ARES_OPT_DOMAINS;
  }
  envhosts_ = o.hosts_file_from_env;

  if (ares_init_options(&channel_, &opts, mask) != ARES_SUCCESS) {
    channel_ = nullptr;
    return make_error_code(ResolveError::resolver_failure);
  }
  ares_set_socket_functions(channel_, &kSocketFunctions, this);

  if (!o.servers.empty()) {
    std::string csv;
    for (const std::string& s : o.servers) {
      // "host:port" / "[v6]:port", else a bare address on port 53.
      auto addr = SocketAddress::parse(s);
      if (!addr) addr = SocketAddress::parse(s, 53);
      if (!addr) return make_error_code(Error::invalid_address);
      if (!csv.empty()) csv += ',';
      csv += addr->to_string();
    }
    if (ares_set_servers_ports_csv(channel_, csv.c_str()) != ARES_SUCCESS)
      return make_error_code(ResolveError::resolver_failure);
  }
  return {};
}

void AresChannel::start(Query& q, const std::string& host, IpFamily family) {
  ares_addrinfo_hints hints{};
  hints.ai_family = address_family(family);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = envhosts_ ? ARES_AI_ENVHOSTS : 0;
  ++outstanding_;
  ++wanted_;
  ++depth_;
  ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &AresChannel::on_addrinfo, &q);
  --depth_;
  settle();
}

void AresChannel::abandon(Query* q, bool settle_now) noexcept {
  q->abandoned = true;
  q->awaiter = nullptr;
  --wanted_;
  if (settle_now) settle();
}

void AresChannel::on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* ai) noexcept {
  auto* q = static_cast<Query*>(arg);
  AresChannel* ch = q->channel;
  --ch->outstanding_;
  if (q->abandoned) {
    if (ai != nullptr) ares_freeaddrinfo(ai);
    delete q;
    return;
  }
  --ch->wanted_;
  q->status = status;
  if (status == ARES_SUCCESS && ai != nullptr) {
    for (ares_addrinfo_node* n = ai->nodes; n != nullptr; n = n->ai_next) {
      if (n->ai_addr == nullptr || n->ai_addrlen > sizeof(sockaddr_storage)) continue;
      sockaddr_storage ss{};
      std::memcpy(&ss, n->ai_addr, n->ai_addrlen);
      if (ss.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(q->port);
      else if (ss.ss_family == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(q->port);
      else
        continue;
      auto addr = SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), n->ai_addrlen);
      if (addr && std::find(q->addresses.begin(), q->addresses.end(), *addr) == q->addresses.end())
        q->addresses.push_back(*addr);
    }
  }
  if (ai != nullptr) ares_freeaddrinfo(ai);
  q->done = true;
  if (QueryAwaiter* a = std::exchange(q->awaiter, nullptr)) a->complete();
}

// ---- sockets ----

ares_socket_t AresChannel::on_socket(int domain, int type, int /*protocol*/, void* self) noexcept {
  auto* ch = static_cast<AresChannel*>(self);
  if (domain != AF_INET && domain != AF_INET6) {
    errno = EAFNOSUPPORT;
    return ARES_SOCKET_BAD;
  }
  const auto family = domain == AF_INET6 ? AddressFamily::ipv6 : AddressFamily::ipv4;
  Entry e{};
  if (type == SOCK_DGRAM) {
    auto s = UdpSocket::open(family);
    if (!s) {
      errno = s.error().value();
      return ARES_SOCKET_BAD;
    }
    e.sock.emplace<UdpSocket>(std::move(*s));
  } else if (type == SOCK_STREAM) {
    auto s = TcpSocket::open(family);
    if (!s) {
      errno = s.error().value();
      return ARES_SOCKET_BAD;
    }
    e.sock.emplace<TcpSocket>(std::move(*s));
  } else {
    errno = EPROTOTYPE;
    return ARES_SOCKET_BAD;
  }
  const int fd = e.socket().native_handle();
  e.id = ++ch->next_id_;
  ch->sockets_.insert_or_assign(fd, std::move(e));
  return fd;
}

int AresChannel::on_close(ares_socket_t fd, void* self) noexcept {
  auto* ch = static_cast<AresChannel*>(self);
  // Dropping the entry closes the socket through its scheduler (a pending wait on it
  // completes with operation_canceled, so its watcher ends) and detaches the watchers.
  if (ch->sockets_.erase(fd) == 0) {
    errno = EBADF;
    return -1;
  }
  return 0;
}

int AresChannel::on_connect(ares_socket_t fd, const sockaddr* addr, ares_socklen_t len, void* /*self*/) noexcept {
  // Non-blocking: UDP connects at once; TCP says EINPROGRESS and c-ares waits for writable.
  return ::connect(fd, addr, len);
}

ares_ssize_t AresChannel::on_recvfrom(ares_socket_t fd, void* buf, std::size_t len, int flags, sockaddr* from,
                                      ares_socklen_t* fromlen, void* /*self*/) noexcept {
  return ::recvfrom(fd, buf, len, flags, from, fromlen);
}

ares_ssize_t AresChannel::on_sendv(ares_socket_t fd, const iovec* iov, int iovcnt, void* self) noexcept {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(iovcnt);
  ares_ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  if (n < 0 && errno == ECONNREFUSED) {
    // On a UDP socket this is the ICMP error of an earlier datagram (the A query's, say),
    // reported here instead of to the reader: c-ares would fail only this query and leave
    // the other to time out. Send again; the new datagram's error then reaches the read
    // path, where c-ares fails every query on the socket with ECONNREFUSED.
    auto* ch = static_cast<AresChannel*>(self);
    auto it = ch->sockets_.find(fd);
    if (it != ch->sockets_.end() && std::holds_alternative<UdpSocket>(it->second.sock))
      n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  }
  return n;
}

void AresChannel::on_sock_state(void* self, ares_socket_t fd, int readable, int writable) noexcept {
  auto* ch = static_cast<AresChannel*>(self);
  if (ch->destroying_) return;
  auto it = ch->sockets_.find(fd);
  if (it == ch->sockets_.end()) return;
  ch->set_watch(it->second, fd, false, readable != 0);
  ch->set_watch(it->second, fd, true, writable != 0);
}

void AresChannel::set_watch(Entry& e, int fd, bool write, bool wanted) {
  Watch& w = write ? e.write : e.read;
  if (w.wanted == wanted) return;
  w.wanted = wanted;
  ++w.gen;
  if (wanted) {
    w.task = sched_->spawn(watch(shared_from_this(), fd, e.id, write, w.gen));
  } else {
    // A suspended watcher's wait is cancelled; a running one (the caller of this, inside
    // ares_process_fd) sees the new generation and ends.
    w.task.cancel();
    w.task = {};
  }
}

Task<void> AresChannel::watch(std::shared_ptr<AresChannel> self, int fd, std::uint64_t id, bool write,
                              std::uint64_t gen) {
  for (;;) {
    Entry* e = self->find(fd, id);
    if (e == nullptr) co_return;
    Watch& w = write ? e->write : e->read;
    if (w.gen != gen || !w.wanted) co_return;
    Socket& s = e->socket();
    Expected<void> ready;
    if (write)
      ready = co_await s.wait_writable();
    else
      ready = co_await s.wait_readable();
    if (!ready) co_return;  // the socket was closed, or this watcher cancelled
    e = self->find(fd, id);
    if (e == nullptr || (write ? e->write : e->read).gen != gen) co_return;
    self->process(write ? ARES_SOCKET_BAD : fd, write ? fd : ARES_SOCKET_BAD);
  }
}

// ---- driving c-ares ----

void AresChannel::process(ares_socket_t read_fd, ares_socket_t write_fd) {
  ++depth_;
  ares_process_fd(channel_, read_fd, write_fd);
  --depth_;
  settle();
}

void AresChannel::settle() noexcept {
  if (depth_ > 0 || destroying_) return;
  if (wanted_ == 0 && outstanding_ > 0) {
    // Only abandoned queries are left: cancel them now (each is called back and freed),
    // which also closes the sockets, instead of letting them run to their timeouts.
    ++depth_;
    ares_cancel(channel_);
    --depth_;
  }
  arm_timer();
}

void AresChannel::arm_timer() noexcept {
  timeval tv{};
  if (outstanding_ == 0 || ares_timeout(channel_, nullptr, &tv) == nullptr) {
    disarm_timer();
    return;
  }
  // Round up to whole milliseconds so the timer never fires before c-ares's deadline.
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(std::chrono::seconds(tv.tv_sec) +
                                                                 std::chrono::microseconds(tv.tv_usec));
  const Clock::time_point deadline = Clock::now() + wait;
  if (timer_armed_ && timer_deadline_ <= deadline) return;  // it fires first and re-arms
  disarm_timer();
  timer_armed_ = true;
  timer_deadline_ = deadline;
  timer_task_ = sched_->spawn(timer(shared_from_this(), deadline, ++timer_gen_));
}

void AresChannel::disarm_timer() noexcept {
  if (!timer_armed_) return;
  timer_armed_ = false;
  ++timer_gen_;
  timer_task_.cancel();
  timer_task_ = {};
}

Task<void> AresChannel::timer(std::shared_ptr<AresChannel> self, Clock::time_point deadline, std::uint64_t gen) {
  auto slept = co_await sleep_until(deadline);
  if (!slept || self->timer_gen_ != gen) co_return;
  self->timer_armed_ = false;
  self->timer_task_ = {};
  self->process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // times the expired tries out; settle() re-arms
}

// ---- entry points ----

Expected<std::shared_ptr<AresChannel>> make_ares_channel(const ResolverOptions& options) {
  Scheduler* sched = Scheduler::current();
  if (sched == nullptr) return make_error(make_error_code(Error::not_bound_to_scheduler));
  auto ch = std::make_shared<AresChannel>(sched);
  if (std::error_code ec = ch->init(options)) return make_error(ec);
  return ch;
}

Task<Expected<std::vector<SocketAddress>>> ares_lookup(std::shared_ptr<AresChannel> channel, std::string host,
                                                       IpFamily family, std::uint16_t port) {
  auto q = std::make_unique<Query>();
  q->channel = channel.get();
  q->port = port;
  Query& query = *q;
  QueryAwaiter awaiter(std::move(q));  // owns the record until it is done or abandoned
  channel->start(query, host, family);
  auto result = co_await awaiter;
  co_return result;
}

}  // namespace galay::detail
