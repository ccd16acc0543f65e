#include "galay-kernel/net/resolver.h"

#include <netdb.h>
#include <netinet/in.h>

#include <array>
#include <charconv>
#include <string_view>
#include <utility>
#include <variant>

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/runtime/sleep.h"
#include "galay-kernel/coro/when_any.h"

#if defined(GALAY_HAVE_CARES)
#include "galay-kernel/net/detail/ares_channel.h"
#endif

namespace galay {
namespace {

class ResolverCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "resolver"; }
  std::string message(int ev) const override {
    switch (static_cast<ResolveError>(ev)) {
      case ResolveError::no_such_host:
        return "no such host";
      case ResolveError::no_address:
        return "the host has no address of the requested family";
      case ResolveError::server_failure:
        return "the DNS server failed (SERVFAIL)";
      case ResolveError::query_refused:
        return "the DNS server refused the query";
      case ResolveError::connection_refused:
        return "the DNS server's port refused the connection";
      case ResolveError::timed_out:
        return "the DNS server did not answer in time";
      case ResolveError::bad_name:
        return "not a valid host name";
      case ResolveError::bad_service:
        return "unknown service or bad port";
      case ResolveError::bad_response:
        return "malformed DNS response";
      case ResolveError::not_implemented:
        return "the DNS server does not implement the query";
      case ResolveError::cancelled:
        return "the lookup was cancelled by the resolver";
      case ResolveError::not_supported:
        return "name resolution needs c-ares (built without it)";
      case ResolveError::resolver_failure:
        return "resolver failure";
    }
    return "unknown resolver error";
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<ResolveError>(ev)) {
      case ResolveError::timed_out:
        return std::errc::timed_out;
      case ResolveError::connection_refused:
        return std::errc::connection_refused;
      case ResolveError::cancelled:
        return std::errc::operation_canceled;
      case ResolveError::bad_name:
      case ResolveError::bad_service:
        return std::errc::invalid_argument;
      case ResolveError::not_supported:
        return std::errc::not_supported;
      default:
        return {ev, *this};
    }
  }
};

Unexpected resolve_error(ResolveError e) { return Unexpected(make_error_code(e)); }

// RFC 1035 limits: 253 characters (254 with the root's trailing dot), labels of 1..63.
bool valid_host_name(std::string_view host) noexcept {
  if (host.empty() || host.find('\0') != std::string_view::npos) return false;
  if (host.back() == '.') host.remove_suffix(1);
  if (host.empty() || host.size() > 253) return false;
  for (std::size_t start = 0;;) {
    const std::size_t dot = host.find('.', start);
    const std::size_t len = (dot == std::string_view::npos ? host.size() : dot) - start;
    if (len == 0 || len > 63) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// A decimal port, or a service name from /etc/services (for TCP).
Expected<std::uint16_t> service_port(std::string_view service) {
  if (service.empty() || service.find('\0') != std::string_view::npos) return resolve_error(ResolveError::bad_service);
  if (service.find_first_not_of("0123456789") == std::string_view::npos) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(service.data(), service.data() + service.size(), port);
    if (ec != std::errc() || end != service.data() + service.size() || port > 65535)
      return resolve_error(ResolveError::bad_service);
    return static_cast<std::uint16_t>(port);
  }
  const std::string name(service);
  servent entry{};
  servent* found = nullptr;
  std::array<char, 4096> buf{};
  if (::getservbyname_r(name.c_str(), "tcp", &entry, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    return resolve_error(ResolveError::bad_service);
  return ntohs(static_cast<std::uint16_t>(found->s_port));
}

bool family_matches(IpFamily want, AddressFamily got) noexcept {
  return want == IpFamily::any || (want == IpFamily::ipv4 && got == AddressFamily::ipv4) ||
         (want == IpFamily::ipv6 && got == AddressFamily::ipv6);
}

#if defined(GALAY_HAVE_CARES)
Task<Expected<void>> sleep_task(Timeout timeout) {
  auto slept = co_await sleep_for(timeout.value);
  co_return slept;
}

// `lookup`, raced against `timeout`: the loser is cancelled and awaited by when_any, so a
// timed-out lookup has let go of the resolver (see AresChannel::abandon) when this returns.
Task<Expected<std::vector<SocketAddress>>> limit(Task<Expected<std::vector<SocketAddress>>> lookup, Timeout timeout) {
  if (!timeout.enabled()) {
    auto result = co_await lookup;
    co_return result;
  }
  auto timer = sleep_task(timeout);
  auto race = when_any(std::move(lookup), std::move(timer));
  auto first = co_await race;
  if (first.index() == 0) co_return std::move(std::get<0>(first));
  const Expected<void>& slept = std::get<1>(first);
  if (!slept) co_return Unexpected(slept.error());  // cancelled while waiting
  co_return Unexpected(std::make_error_code(std::errc::timed_out));
}
#endif

// A lookup that fails with `ec` before it starts (a service name that isn't known).
Task<Expected<std::vector<SocketAddress>>> failed_lookup(std::error_code ec) { co_return Unexpected(ec); }

}  // namespace

const std::error_category& resolver_category() noexcept {
  static const ResolverCategory category;
  return category;
}

struct Resolver::State {
  ResolverOptions options;
#if defined(GALAY_HAVE_CARES)
  std::shared_ptr<detail::AresChannel> channel;
#endif
};

Resolver::Resolver(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
Resolver::Resolver(Resolver&&) noexcept = default;
Resolver& Resolver::operator=(Resolver&&) noexcept = default;
Resolver::~Resolver() = default;

Expected<Resolver> Resolver::create(ResolverOptions options) {
  if (Scheduler::current() == nullptr) return make_error(make_error_code(Error::not_bound_to_scheduler));
  auto state = std::make_shared<State>();
#if defined(GALAY_HAVE_CARES)
  auto channel = detail::make_ares_channel(options);
  if (!channel) return make_error(channel.error());
  state->channel = std::move(*channel);
#else
  for (const std::string& s : options.servers) {
    if (!SocketAddress::parse(s) && !SocketAddress::parse(s, 53))
      return make_error(make_error_code(Error::invalid_address));
  }
#endif
  state->options = std::move(options);
  return Resolver(std::move(state));
}

const ResolverOptions& Resolver::options() const noexcept {
  static const ResolverOptions empty;
  return state_ ? state_->options : empty;
}

Task<Expected<std::vector<SocketAddress>>> Resolver::resolve(std::string host, std::uint16_t port, Timeout timeout) {
  return lookup(state_, std::move(host), port, timeout);
}

Task<Expected<std::vector<SocketAddress>>> Resolver::resolve(std::string host, std::string_view service,
                                                             Timeout timeout) {
  auto port = service_port(service);
  if (!port) return failed_lookup(port.error());
  return lookup(state_, std::move(host), *port, timeout);
}

Task<Expected<std::vector<SocketAddress>>> Resolver::lookup(std::shared_ptr<State> state, std::string host,
                                                            std::uint16_t port, Timeout timeout) {
  if (!state) co_return Unexpected(std::make_error_code(std::errc::bad_file_descriptor));  // a moved-from Resolver
  if (CancelScope* scope = co_await current_scope(); scope != nullptr && scope->cancelled())
    co_return Unexpected(std::make_error_code(scope->reason()));
  if (host.empty() || host.find('\0') != std::string::npos) co_return resolve_error(ResolveError::bad_name);

  // Numeric hosts need no query.
  if (auto numeric = SocketAddress::parse(host, port)) {
    if (!family_matches(state->options.family, numeric->family())) co_return resolve_error(ResolveError::no_address);
    co_return std::vector<SocketAddress>{*numeric};
  }
  if (!valid_host_name(host)) co_return resolve_error(ResolveError::bad_name);

#if defined(GALAY_HAVE_CARES)
  auto task = detail::ares_lookup(state->channel, std::move(host), state->options.family, port);
  auto result = co_await limit(std::move(task), timeout);
  co_return result;
#else
  (void)timeout;
  co_return resolve_error(ResolveError::not_supported);
#endif
}

namespace {

Task<Expected<std::vector<SocketAddress>>> one_shot(std::string host, std::uint16_t port, ResolverOptions options,
                                                    Timeout timeout) {
  auto resolver = Resolver::create(std::move(options));
  if (!resolver) co_return Unexpected(resolver.error());
  auto task = resolver->resolve(std::move(host), port, timeout);
  auto result = co_await task;
  co_return result;
}

}  // namespace

Task<Expected<std::vector<SocketAddress>>> resolve(std::string host, std::uint16_t port, ResolverOptions options,
                                                   Timeout timeout) {
  return one_shot(std::move(host), port, std::move(options), timeout);
}

Task<Expected<std::vector<SocketAddress>>> resolve(std::string host, std::string_view service, ResolverOptions options,
                                                   Timeout timeout) {
  auto port = service_port(service);
  if (!port) return failed_lookup(port.error());
  return one_shot(std::move(host), *port, std::move(options), timeout);
}

}  // namespace galay
