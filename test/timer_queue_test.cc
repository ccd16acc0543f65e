#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "galay-kernel/kernel/timer_queue.h"

namespace galay {
namespace {

struct Recorder {
  std::vector<int>* out;
  int id;
  TimerNode node;
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
    recs[i].node.owner = &recs[i];
    recs[i].node.fire = [](void* o) {
      auto* r = static_cast<Recorder*>(o);
      r->out->push_back(r->id);
    };
    q.arm(recs[i].node, base + std::chrono::milliseconds(rng() % 50));
  }
  for (int i = 0; i < 500; i += 3) q.cancel(recs[i].node);
  for (int i = 0; i < 500; i += 3) EXPECT_FALSE(recs[i].node.armed());
  q.cancel(recs[0].node);  // cancelling twice is harmless
  EXPECT_EQ(q.fire_expired(base + std::chrono::milliseconds(100)), 500u - 167u);
  EXPECT_TRUE(q.empty());
  for (std::size_t k = 1; k < fired.size(); ++k) {
    const auto& a = recs[fired[k - 1]].node;
    const auto& b = recs[fired[k]].node;
    EXPECT_TRUE(a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq));
  }
  EXPECT_TRUE(std::none_of(fired.begin(), fired.end(), [](int id) { return id % 3 == 0; }));
}

}  // namespace
}  // namespace galay
