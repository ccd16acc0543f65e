#pragma once
/// @file when_all.h
/// when_all: run tasks concurrently on the current scheduler and wait for all of them.
/// The result holds every value in order (void becomes std::monostate). If any task
/// throws, the others still run to completion and then the first exception (in argument
/// order) is rethrown. Cancelling the awaiting task cancels every branch.

#include <tuple>
#include <utility>
#include <vector>

#include "galay-kernel/coro/branch_group.h"

namespace galay {

template <class... Ts>
/// Run `tasks` concurrently on the current scheduler and wait for all of them (see the
/// file comment for the result and exception rules).
Task<std::tuple<detail::StoredResult<Ts>...>> when_all(Task<Ts>... tasks) {
  detail::BranchGroup group(sizeof...(Ts));
  std::tuple<detail::BranchSlot<Ts>...> slots;
  co_await detail::GroupAwaiter(group, [&] {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (detail::launch_driver(group, I, detail::drive_branch(std::move(tasks), std::get<I>(slots))), ...);
    }
    (std::index_sequence_for<Ts...>{});
  });
  co_return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple<detail::StoredResult<Ts>...>(detail::take_slot(std::get<I>(slots))...);
  }
  (std::index_sequence_for<Ts...>{});
}

/// when_all over a homogeneous list.
template <class T>
Task<std::vector<detail::StoredResult<T>>> when_all(std::vector<Task<T>> tasks) {
  detail::BranchGroup group(tasks.size());
  std::vector<detail::BranchSlot<T>> slots(tasks.size());
  co_await detail::GroupAwaiter(group, [&] {
    for (std::size_t i = 0; i < tasks.size(); ++i)
      detail::launch_driver(group, i, detail::drive_branch(std::move(tasks[i]), slots[i]));
  });
  std::vector<detail::StoredResult<T>> out;
  out.reserve(slots.size());
  for (auto& s : slots) out.push_back(detail::take_slot(s));
  co_return out;
}

}  // namespace galay
