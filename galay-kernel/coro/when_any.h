#pragma once
/// @file when_any.h
/// when_any: run tasks concurrently and finish with the first one to complete. The others
/// are cancelled through their real cancellation paths (their pending kernel operations
/// are cancelled) and awaited before when_any returns, so nothing is leaked or left
/// running. The result holds the winner (for the variadic form it *is* a std::variant
/// whose index() is the winner; void becomes std::monostate) and what every loser
/// returned.
///
/// Nothing is dropped: a loser whose operation had already completed when the winner
/// finished (both completed in the same loop turn, or the kernel finished it before the
/// cancel reached it) returns its real result, e.g. the bytes its recv consumed, and that
/// value is in `losers`. A loser the cancel did reach usually returns its
/// operation_canceled error there. So `when_any(recv_task, sleep_task)` used as a timeout
/// loses no data as long as the caller also looks at `losers` when the sleep wins. If
/// the winner threw, its exception is rethrown; exceptions of losers are discarded (their
/// `losers` entry stays empty).

#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "galay-kernel/coro/branch_group.h"

namespace galay {

namespace detail {
// A finished branch's value, or empty if it threw.
template <class T>
std::optional<StoredResult<T>> take_loser(BranchSlot<T>& slot) {
  if (slot.value.index() != 1) return std::nullopt;
  return std::move(std::get<1>(slot.value));
}
}  // namespace detail

/// Result of the variadic when_any: the winner's value as the std::variant it derives from
/// (`index()` is the winner; std::get, std::visit and std::holds_alternative work on it),
/// plus `losers`, where element I holds what branch I returned when it lost (see the file
/// comment: a completed loser keeps its value here).
template <class... Ts>
class WhenAnyResult : public std::variant<detail::StoredResult<Ts>...> {
 public:
  /// The variant that holds the winner.
  using Variant = std::variant<detail::StoredResult<Ts>...>;
  using Variant::Variant;
  /// What each losing branch returned (empty for the winner and for losers that threw).
  std::tuple<std::optional<detail::StoredResult<Ts>>...> losers;
};

template <class... Ts>
/// Run `tasks` concurrently on the current scheduler and return as soon as one finishes:
/// its value (at its index in the variant) or its exception. The others are cancelled
/// through their scopes and awaited before when_any returns, so nothing they hold is in
/// use afterwards.
Task<WhenAnyResult<Ts...>> when_any(Task<Ts>... tasks) {
  static_assert(sizeof...(Ts) > 0, "when_any needs at least one task");
  detail::BranchGroup group(sizeof...(Ts));
  group.set_cancel_others_on_first(true);
  std::tuple<detail::BranchSlot<Ts>...> slots;
  co_await detail::GroupAwaiter(group, [&] {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (detail::launch_driver(group, I, detail::drive_branch(std::move(tasks), std::get<I>(slots))), ...);
    }
    (std::index_sequence_for<Ts...>{});
  });
  std::size_t winner = group.first_done();
  WhenAnyResult<Ts...> out;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((I == winner ? (void)out.template emplace<I>(detail::take_slot(std::get<I>(slots)))
                  : (void)(std::get<I>(out.losers) = detail::take_loser(std::get<I>(slots)))),
     ...);
  }
  (std::index_sequence_for<Ts...>{});
  co_return out;
}

/// Result of when_any over a list: the winner's index and value, and what the losers returned.
template <class T>
struct AnyResult {
  /// Position of the winner in the list.
  std::size_t index;
  /// Its value (std::monostate for void).
  detail::StoredResult<T> value;
  /// One entry per task: what each loser returned (see the file comment); empty for the
  /// winner and for losers that threw.
  std::vector<std::optional<detail::StoredResult<T>>> losers;
};

/// when_any over a homogeneous, non-empty list (an empty one throws std::invalid_argument:
/// there would be no winner).
template <class T>
Task<AnyResult<T>> when_any(std::vector<Task<T>> tasks) {
  if (tasks.empty()) throw std::invalid_argument("when_any: empty list of tasks");
  detail::BranchGroup group(tasks.size());
  group.set_cancel_others_on_first(true);
  std::vector<detail::BranchSlot<T>> slots(tasks.size());
  co_await detail::GroupAwaiter(group, [&] {
    for (std::size_t i = 0; i < tasks.size(); ++i)
      detail::launch_driver(group, i, detail::drive_branch(std::move(tasks[i]), slots[i]));
  });
  std::size_t winner = group.first_done();
  std::vector<std::optional<detail::StoredResult<T>>> losers(slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (i != winner) losers[i] = detail::take_loser(slots[i]);
  co_return AnyResult<T>{winner, detail::take_slot(slots[winner]), std::move(losers)};
}

}  // namespace galay
