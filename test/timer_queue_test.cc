#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "galay-kernel/runtime/timer_queue.h"

namespace galay {
namespace {

struct Recorder : TimerNode {
  std::vector<int>* out;
  int id;
  Clock::time_point deadline;
  int arm_order;
};

TEST(TimerQueue, FiresInDeadlineThenArmingOrderAndCancels) {
  TimerQueue q;
  std::vector<int> fired;
  std::vector<Recorder> recs(500);
  std::mt19937 rng(7);
  auto base = Clock::now();
  for (int i = 0; i < 500; ++i) {
    recs[i].out = &fired;
    recs[i].id = i;
    recs[i].fire = [](TimerNode* n) {
      auto* r = static_cast<Recorder*>(n);
      r->out->push_back(r->id);
    };
    recs[i].deadline = base + std::chrono::milliseconds(rng() % 50);
    recs[i].arm_order = i;
    q.arm(recs[i], recs[i].deadline);
  }
  for (int i = 0; i < 500; i += 3) q.cancel(recs[i]);
  for (int i = 0; i < 500; i += 3) EXPECT_FALSE(recs[i].armed());
  q.cancel(recs[0]);  // cancelling twice is harmless
  EXPECT_EQ(q.fire_expired(base + std::chrono::milliseconds(100)), 500u - 167u);
  EXPECT_TRUE(q.empty());
  for (std::size_t k = 1; k < fired.size(); ++k) {
    const auto& a = recs[fired[k - 1]];
    const auto& b = recs[fired[k]];
    EXPECT_TRUE(a.deadline < b.deadline || (a.deadline == b.deadline && a.arm_order < b.arm_order));
  }
  EXPECT_TRUE(std::none_of(fired.begin(), fired.end(), [](int id) { return id % 3 == 0; }));
}

}  // namespace
}  // namespace galay
