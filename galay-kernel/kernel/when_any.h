#pragma once
/// @file when_any.h
/// when_any: run tasks concurrently and finish with the first one to complete. The others
/// are cancelled through their real cancellation paths (their pending kernel operations
/// are cancelled) and awaited before when_any returns, so nothing is leaked or left
/// running. The result is a std::variant whose index() is the winner (void becomes
/// std::monostate). If the winner threw, its exception is rethrown; exceptions of the
/// cancelled losers are discarded.

#include <utility>
#include <variant>
#include <vector>

#include "galay-kernel/kernel/branch_group.h"

namespace galay {

template <class... Ts>
/// Run `tasks` concurrently on the current scheduler and return as soon as one finishes:
/// its value (at its index in the variant) or its exception. The others are cancelled
/// through their scopes and awaited before when_any returns, so nothing they hold is in
/// use afterwards.
Task<std::variant<detail::StoredResult<Ts>...>> when_any(Task<Ts>... tasks) {
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
  using Result = std::variant<detail::StoredResult<Ts>...>;
  std::size_t winner = group.first_done();
  Result out;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((I == winner ? (out.template emplace<I>(detail::take_slot(std::get<I>(slots))), 0) : 0), ...);
  }
  (std::index_sequence_for<Ts...>{});
  co_return out;
}

/// Result of when_any over a list: the winner's index and value.
template <class T>
struct AnyResult {
  /// Position of the winner in the list.
  std::size_t index;
  /// Its value (std::monostate for void).
  detail::StoredResult<T> value;
};

/// when_any over a homogeneous, non-empty list.
template <class T>
Task<AnyResult<T>> when_any(std::vector<Task<T>> tasks) {
  detail::BranchGroup group(tasks.size());
  group.set_cancel_others_on_first(true);
  std::vector<detail::BranchSlot<T>> slots(tasks.size());
  co_await detail::GroupAwaiter(group, [&] {
    for (std::size_t i = 0; i < tasks.size(); ++i)
      detail::launch_driver(group, i, detail::drive_branch(std::move(tasks[i]), slots[i]));
  });
  std::size_t winner = group.first_done();
  co_return AnyResult<T>{winner, detail::take_slot(slots[winner])};
}

}  // namespace galay
