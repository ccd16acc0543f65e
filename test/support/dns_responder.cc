#include "support/dns_responder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <span>

namespace galay::test {

struct DnsResponder::State {
  UdpSocket udp;
  TcpSocket listener;
  std::map<std::string, DnsEntry> names;
  std::vector<DnsQuery> queries;
  int answers = 0;
  std::vector<JoinHandle<void>> tasks;
  bool stopping = false;

  void keep(JoinHandle<void> h) {
    // Forget finished tasks so a long test does not pile up handles.
    std::erase_if(tasks, [](const JoinHandle<void>& t) { return t.done(); });
    tasks.push_back(std::move(h));
  }
};

namespace {

constexpr int kTypeA = 1;
constexpr int kTypeCname = 5;
constexpr int kTypeAaaa = 28;
constexpr int kRcodeServfail = 2;
constexpr int kRcodeNxdomain = 3;
constexpr int kRcodeRefused = 5;

using Bytes = std::vector<std::uint8_t>;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void put16(Bytes& out, unsigned v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

void put_name(Bytes& out, const std::string& name) {
  std::size_t start = 0;
  while (start < name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    out.push_back(static_cast<std::uint8_t>(dot - start));
    out.insert(out.end(), name.begin() + static_cast<std::ptrdiff_t>(start),
               name.begin() + static_cast<std::ptrdiff_t>(dot));
    start = dot + 1;
  }
  out.push_back(0);
}

void put_record(Bytes& out, const std::string& owner, int type, const Bytes& rdata) {
  put_name(out, owner);
  put16(out, static_cast<unsigned>(type));
  put16(out, 1);  // IN
  put16(out, 0);  // TTL 60, high half
  put16(out, 60);
  put16(out, static_cast<unsigned>(rdata.size()));
  out.insert(out.end(), rdata.begin(), rdata.end());
}

struct Question {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;
  std::string name;
  int type = 0;
  std::size_t end = 0;  // offset just past the (first) question
};

std::optional<Question> parse_query(std::span<const std::uint8_t> m) {
  if (m.size() < 12) return std::nullopt;
  Question q;
  q.id = static_cast<std::uint16_t>((m[0] << 8) | m[1]);
  q.flags = static_cast<std::uint16_t>((m[2] << 8) | m[3]);
  if (((m[4] << 8) | m[5]) < 1) return std::nullopt;
  std::size_t p = 12;
  for (;;) {
    if (p >= m.size()) return std::nullopt;
    const std::size_t len = m[p++];
    if (len == 0) break;
    if (len > 63 || p + len > m.size()) return std::nullopt;
    if (!q.name.empty()) q.name += '.';
    q.name.append(reinterpret_cast<const char*>(m.data() + p), len);
    p += len;
  }
  if (p + 4 > m.size()) return std::nullopt;
  q.type = (m[p] << 8) | m[p + 1];
  q.end = p + 4;
  q.name = lower(q.name);
  return q;
}

struct Reply {
  Bytes message;
  std::chrono::milliseconds delay{0};
};

// The reply to `query`, or nothing (silent, or not a query).
std::optional<Reply> respond(DnsResponder::State& st, std::span<const std::uint8_t> query, bool tcp) {
  auto q = parse_query(query);
  if (!q || (q->flags & 0x8000) != 0) return std::nullopt;
  st.queries.push_back(DnsQuery{q->name, q->type, tcp});

  auto find = [&](const std::string& name) -> const DnsEntry* {
    auto it = st.names.find(name);
    return it == st.names.end() ? nullptr : &it->second;
  };
  const DnsEntry* entry = find(q->name);
  if (entry != nullptr && entry->behavior == DnsBehavior::silent) return std::nullopt;

  int rcode = 0;
  bool truncated = false;
  Bytes answers;
  int count = 0;
  if (entry == nullptr || entry->behavior == DnsBehavior::nxdomain) {
    rcode = kRcodeNxdomain;
  } else if (entry->behavior == DnsBehavior::servfail) {
    rcode = kRcodeServfail;
  } else if (entry->behavior == DnsBehavior::refused) {
    rcode = kRcodeRefused;
  } else if (entry->behavior == DnsBehavior::truncate_udp && !tcp) {
    truncated = true;
  } else {
    std::string owner = q->name;
    const DnsEntry* e = entry;
    for (int hops = 0; e != nullptr && !e->cname.empty() && hops < 8; ++hops) {
      Bytes target;
      put_name(target, e->cname);
      put_record(answers, owner, kTypeCname, target);
      ++count;
      owner = lower(e->cname);
      e = find(owner);
    }
    if (e != nullptr) {
      if (q->type == kTypeA) {
        for (const std::string& a : e->a) {
          Bytes rdata(4);
          if (::inet_pton(AF_INET, a.c_str(), rdata.data()) != 1) continue;
          put_record(answers, owner, kTypeA, rdata);
          ++count;
        }
      } else if (q->type == kTypeAaaa) {
        for (const std::string& a : e->aaaa) {
          Bytes rdata(16);
          if (::inet_pton(AF_INET6, a.c_str(), rdata.data()) != 1) continue;
          put_record(answers, owner, kTypeAaaa, rdata);
          ++count;
        }
      }
    }
  }

  Reply r;
  r.delay = entry != nullptr ? entry->delay : std::chrono::milliseconds(0);
  Bytes& out = r.message;
  put16(out, q->id);
  unsigned flags = 0x8000u | (q->flags & 0x7800u) | 0x0400u | (q->flags & 0x0100u) | 0x0080u;
  if (truncated) flags |= 0x0200u;
  put16(out, flags | static_cast<unsigned>(rcode));
  put16(out, 1);
  put16(out, static_cast<unsigned>(truncated ? 0 : count));
  put16(out, 0);
  put16(out, 0);
  out.insert(out.end(), query.begin() + 12, query.begin() + static_cast<std::ptrdiff_t>(q->end));
  if (!truncated) out.insert(out.end(), answers.begin(), answers.end());
  return r;
}

std::span<const std::byte> as_bytes(const Bytes& b) { return std::as_bytes(std::span(b.data(), b.size())); }

Task<void> send_later(std::shared_ptr<DnsResponder::State> st, Bytes reply, SocketAddress to,
                      std::chrono::milliseconds delay) {
  // (Results go to locals: GCC 12 mishandles some co_await expressions inside conditions.)
  auto slept = co_await sleep_for(delay);
  if (!slept) co_return;
  auto sent = co_await st->udp.send_to(as_bytes(reply), to);
  if (sent) ++st->answers;
}

Task<void> serve_udp(std::shared_ptr<DnsResponder::State> st) {
  std::array<std::uint8_t, 4096> buf{};
  for (;;) {
    SocketAddress from;
    auto d = co_await st->udp.recv_from(std::as_writable_bytes(std::span(buf)), &from);
    if (!d) {
      if (d.error() == std::errc::operation_canceled || d.error() == std::errc::bad_file_descriptor) co_return;
      continue;
    }
    auto reply = respond(*st, std::span<const std::uint8_t>(buf.data(), d->size), false);
    if (!reply) continue;
    if (reply->delay.count() > 0) {
      if (!st->stopping) st->keep(spawn(send_later(st, std::move(reply->message), from, reply->delay)));
    } else {
      auto sent = co_await st->udp.send_to(as_bytes(reply->message), from);
      if (sent) ++st->answers;
    }
  }
}

Task<bool> read_exact(TcpSocket& s, std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    auto r = co_await s.recv(p, n);
    if (!r || *r == 0) co_return false;
    p += *r;
    n -= *r;
  }
  co_return true;
}

Task<void> serve_tcp_connection(std::shared_ptr<DnsResponder::State> st, TcpSocket conn) {
  for (;;) {
    std::array<std::uint8_t, 2> len{};
    const bool got_len = co_await read_exact(conn, len.data(), 2);
    if (!got_len) co_return;
    Bytes query(static_cast<std::size_t>((len[0] << 8) | len[1]));
    const bool got_query = co_await read_exact(conn, query.data(), query.size());
    if (!got_query) co_return;
    auto reply = respond(*st, query, true);
    if (!reply) continue;
    if (reply->delay.count() > 0) {
      auto slept = co_await sleep_for(reply->delay);
      if (!slept) co_return;
    }
    Bytes framed;
    put16(framed, static_cast<unsigned>(reply->message.size()));
    framed.insert(framed.end(), reply->message.begin(), reply->message.end());
    auto sent = co_await conn.send_all(as_bytes(framed));
    if (!sent) co_return;
    ++st->answers;
  }
}

Task<void> serve_tcp(std::shared_ptr<DnsResponder::State> st) {
  for (;;) {
    auto conn = co_await st->listener.accept();
    if (!conn) {
      if (conn.error() == std::errc::operation_canceled || conn.error() == std::errc::bad_file_descriptor) co_return;
      continue;
    }
    if (!st->stopping) st->keep(spawn(serve_tcp_connection(st, std::move(*conn))));
  }
}

}  // namespace

std::unique_ptr<DnsResponder> DnsResponder::start() {
  auto st = std::make_shared<State>();
  for (int tries = 0; tries < 20; ++tries) {
    auto udp = UdpSocket::bind_to(SocketAddress::loopback(0));
    if (!udp) continue;
    auto tcp = TcpSocket::listen_on(SocketAddress::loopback(udp->local_address()->port()));
    if (!tcp) continue;  // the TCP port is taken: another UDP port
    st->udp = std::move(*udp);
    st->listener = std::move(*tcp);
    break;
  }
  if (!st->udp.is_open()) return nullptr;
  st->keep(spawn(serve_udp(st)));
  st->keep(spawn(serve_tcp(st)));
  return std::unique_ptr<DnsResponder>(new DnsResponder(std::move(st)));
}

DnsResponder::~DnsResponder() {
  state_->stopping = true;
  for (auto& t : state_->tasks) t.cancel();
}

void DnsResponder::set(const std::string& name, DnsEntry entry) { state_->names[lower(name)] = std::move(entry); }
std::string DnsResponder::server() const { return "127.0.0.1:" + std::to_string(port()); }
std::uint16_t DnsResponder::port() const { return state_->udp.local_address()->port(); }
const std::vector<DnsQuery>& DnsResponder::queries() const { return state_->queries; }
int DnsResponder::udp_queries() const {
  return static_cast<int>(
      std::count_if(state_->queries.begin(), state_->queries.end(), [](auto& q) { return !q.tcp; }));
}
int DnsResponder::tcp_queries() const {
  return static_cast<int>(std::count_if(state_->queries.begin(), state_->queries.end(), [](auto& q) { return q.tcp; }));
}
int DnsResponder::answers_sent() const { return state_->answers; }

Task<void> DnsResponder::stop() {
  auto st = state_;
  st->stopping = true;
  for (auto& t : st->tasks) t.cancel();
  for (auto& t : st->tasks) co_await t;
  st->tasks.clear();
}

}  // namespace galay::test
