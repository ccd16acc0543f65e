#pragma once
// Helpers for the multi-scheduler tests (ThreadRuntime*, ThreadSync*): a Runtime per test
// on the backend under test, and a bounded wait for a task's result from the test thread.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>

#include "galay-kernel/galay-kernel.h"
#include "galay-kernel/runtime/runtime.h"
#include "support/harness.h"

namespace galay::test {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

/// A test parametrised over backends that owns a Runtime with `threads()` workers.
class RuntimeTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    if (std::string why = backend_unavailable_reason(GetParam()); !why.empty())
      GTEST_SKIP() << to_string(GetParam()) << " backend unavailable: " << why;
    auto built =
        configure(Runtime::builder().threads(threads()).scheduler_options(GetParam().apply(Scheduler::Options{})))
            .build();
    ASSERT_TRUE(built.has_value()) << built.error().message();
    rt_ = std::move(*built);
    ASSERT_EQ(rt_->backend_kind(), GetParam().kind);
    for (Scheduler* s : rt_->schedulers())
      if (std::string why = GetParam().unavailable_reason(*s); !why.empty()) GTEST_SKIP() << why;
  }
  void TearDown() override { rt_.reset(); }
  virtual std::size_t threads() const { return 2; }
  virtual Runtime::Builder configure(Runtime::Builder b) { return b; }

  /// Run `task` on a worker and wait for it; a hang aborts the test binary (each test runs
  /// in its own process under ctest) instead of blocking forever.
  template <class T>
  T run(Task<T> task, std::chrono::seconds limit = std::chrono::seconds(60)) {
    auto slot = std::make_shared<detail::Rendezvous<T>>();
    rt_->spawn(detail::fulfil(std::move(task), detail::RendezvousRef<T>(slot))).detach();
    if (!slot->wait_for(limit)) {
      std::fprintf(stderr, "test task did not finish within %lld s\n", static_cast<long long>(limit.count()));
      std::abort();
    }
    return slot->take();
  }

  Runtime& rt() { return *rt_; }
  std::unique_ptr<Runtime> rt_;
};

#define GALAY_INSTANTIATE_RUNTIME_BACKENDS(Suite)                                                  \
  INSTANTIATE_TEST_SUITE_P(AllBackends, Suite, ::testing::ValuesIn(::galay::test::all_backends()), \
                           ::galay::test::backend_name)

}  // namespace galay::test
