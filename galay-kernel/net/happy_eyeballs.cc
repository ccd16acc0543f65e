#include "galay-kernel/net/happy_eyeballs.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include "galay-kernel/runtime/scheduler.h"
#include "galay-kernel/runtime/sleep.h"
#include "galay-kernel/sync/event.h"
#include "galay-kernel/coro/when_any.h"

namespace galay {
namespace {

// The shared state of one race. It lives in race()'s frame; when_any awaits every task that
// uses it before race() returns.
//
// Tasks: a pacer and one attempt per address, all in one when_any. An attempt completes only
// when it connects (or when the race is cancelled): a failed one records its error and
// waits on `never` until when_any cancels it. The pacer starts the attempts one by one
// (turn[i]), and completes with the error when every attempt has failed, or with timed_out
// at the deadline. So the first task to complete is the winner, or the pacer with the
// race's error.
struct Race {
  Race(std::vector<SocketAddress> a, std::chrono::milliseconds d, std::optional<Clock::time_point> dl)
      : addrs(std::move(a)), turn(std::make_unique<sync::Event[]>(addrs.size())), delay(d), deadline(dl) {}

  void fail(std::error_code ec) {
    last_error = ec;
    ++failed;
    ++credits;
    progress.set();
  }

  std::vector<SocketAddress> addrs;
  std::unique_ptr<sync::Event[]> turn;  // turn[i] set: attempt i may start
  sync::Event progress;                 // set whenever an attempt fails
  sync::Event never;                    // never set: failed attempts park here
  std::size_t failed = 0;               // attempts that failed
  std::size_t credits = 0;              // failures not yet answered by starting the next attempt
  std::error_code last_error;
  std::chrono::milliseconds delay;
  std::optional<Clock::time_point> deadline;
};

Task<Expected<void>> wait_event(sync::Event& e) {
  auto r = co_await e.wait();
  co_return r;
}

Task<Expected<void>> sleep_task(Clock::time_point until) {
  auto r = co_await sleep_until(until);
  co_return r;
}

// Wait until `race.progress` is set or `until` passes. Yields the cancellation error if the
// pacer was cancelled meanwhile.
Task<Expected<void>> wait_progress(Race& race, Clock::time_point until) {
  auto event = wait_event(race.progress);
  auto timer = sleep_task(until);
  auto first = co_await when_any(std::move(event), std::move(timer));
  const Expected<void>& r = first.index() == 0 ? std::get<0>(first) : std::get<1>(first);
  co_return r;
}

Task<Expected<TcpSocket>> attempt(Race& race, std::size_t i) {
  if (i > 0) {
    auto go = co_await race.turn[i].wait();
    if (!go) co_return Unexpected(go.error());
  }
  std::error_code failure;
  {
    const SocketAddress& addr = race.addrs[i];
    auto sock = TcpSocket::open(addr.family());
    if (!sock) {
      failure = sock.error();
    } else {
      auto connected = co_await sock->connect(addr);
      if (connected) co_return std::move(*sock);
      failure = connected.error();
    }
  }  // a failed attempt's socket is closed here
  if (failure == std::errc::operation_canceled) co_return Unexpected(failure);  // the race is over
  race.fail(failure);
  auto parked = co_await race.never.wait();  // until when_any cancels this loser
  co_return Unexpected(parked ? failure : parked.error());
}

Task<Expected<TcpSocket>> pace(Race& race) {
  const std::size_t n = race.addrs.size();
  auto past_deadline = [&] { return race.deadline && Clock::now() >= *race.deadline; };
  for (std::size_t i = 1; i < n; ++i) {
    if (race.credits == 0) {
      race.progress.reset();
      Clock::time_point until = Clock::now() + race.delay;
      if (race.deadline) until = std::min(until, *race.deadline);
      auto waited = co_await wait_progress(race, until);
      if (!waited) co_return Unexpected(waited.error());
    }
    if (past_deadline()) co_return Unexpected(std::make_error_code(std::errc::timed_out));
    if (race.credits > 0) --race.credits;
    race.turn[i].set();
  }
  // Every attempt has started: wait until all have failed, or the deadline.
  while (race.failed < n) {
    race.progress.reset();
    if (race.deadline) {
      auto waited = co_await wait_progress(race, *race.deadline);
      if (!waited) co_return Unexpected(waited.error());
      if (race.failed < n && past_deadline()) co_return Unexpected(std::make_error_code(std::errc::timed_out));
    } else {
      auto waited = co_await race.progress.wait();
      if (!waited) co_return Unexpected(waited.error());
    }
  }
  co_return Unexpected(race.last_error);
}

bool family_matches(IpFamily want, AddressFamily got) noexcept {
  return want == IpFamily::any || (want == IpFamily::ipv4 && got == AddressFamily::ipv4) ||
         (want == IpFamily::ipv6 && got == AddressFamily::ipv6);
}

std::optional<Clock::time_point> deadline_of(Timeout t) {
  if (!t.enabled()) return std::nullopt;
  const Clock::time_point now = Clock::now();
  // Clamp: a huge timeout must not overflow the clock.
  if (t.value > std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::time_point::max() - now))
    return std::nullopt;
  return now + std::chrono::duration_cast<Clock::duration>(t.value);
}

Task<Expected<TcpSocket>> race(std::vector<SocketAddress> addresses, const ConnectOptions& options,
                               std::optional<Clock::time_point> deadline) {
  std::erase_if(addresses, [&](const SocketAddress& a) { return !family_matches(options.family, a.family()); });
  addresses = happy_eyeballs_order(addresses, options.prefer_ipv6);
  if (addresses.empty()) co_return Unexpected(make_error_code(ResolveError::no_address));
  if (deadline && Clock::now() >= *deadline) co_return Unexpected(std::make_error_code(std::errc::timed_out));

  Race state(std::move(addresses), options.attempt_delay, deadline);
  std::vector<Task<Expected<TcpSocket>>> tasks;
  tasks.reserve(state.addrs.size() + 1);
  tasks.push_back(pace(state));
  for (std::size_t i = 0; i < state.addrs.size(); ++i) tasks.push_back(attempt(state, i));
  auto any = when_any(std::move(tasks));
  auto first = co_await any;
  co_return std::move(first.value);
}

}  // namespace

std::vector<SocketAddress> happy_eyeballs_order(const std::vector<SocketAddress>& addresses, bool prefer_ipv6) {
  std::vector<SocketAddress> v6, v4;
  for (const SocketAddress& a : addresses) {
    auto& list = a.family() == AddressFamily::ipv6 ? v6 : v4;
    if (std::find(list.begin(), list.end(), a) == list.end()) list.push_back(a);
  }
  std::vector<SocketAddress>* first = &v6;
  std::vector<SocketAddress>* second = &v4;
  if (!prefer_ipv6 || v6.empty()) std::swap(first, second);
  if (first->empty()) std::swap(first, second);
  std::vector<SocketAddress> out;
  out.reserve(v6.size() + v4.size());
  for (std::size_t i = 0; i < std::max(first->size(), second->size()); ++i) {
    if (i < first->size()) out.push_back((*first)[i]);
    if (i < second->size()) out.push_back((*second)[i]);
  }
  return out;
}

Task<Expected<TcpSocket>> connect_any(std::vector<SocketAddress> addresses, ConnectOptions options) {
  auto result = co_await race(std::move(addresses), options, deadline_of(options.timeout));
  co_return result;
}

Task<Expected<TcpSocket>> connect_by_name(std::string host, std::uint16_t port, ConnectOptions options) {
  const std::optional<Clock::time_point> deadline = deadline_of(options.timeout);
  Expected<std::vector<SocketAddress>> addresses;
  if (options.resolver != nullptr) {
    auto lookup = options.resolver->resolve(std::move(host), port, options.timeout);
    addresses = co_await lookup;
  } else {
    ResolverOptions ro = options.resolver_options;
    if (options.family != IpFamily::any) ro.family = options.family;
    auto lookup = resolve(std::move(host), port, std::move(ro), options.timeout);
    addresses = co_await lookup;
  }
  if (!addresses) co_return Unexpected(addresses.error());
  auto result = co_await race(std::move(*addresses), options, deadline);
  co_return result;
}

}  // namespace galay
