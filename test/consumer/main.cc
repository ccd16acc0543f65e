// An out-of-tree consumer: builds against an installed galay-kernel, via find_package or pkg-config.
#include <galay-kernel/galay-kernel.h>
#include <cstdio>
using namespace galay;
int main() {
  auto s = Scheduler::create();
  int v = (*s)->block_on([]() -> Task<int> {
    co_await sleep_for(std::chrono::milliseconds(1));
    co_return 42;
  }());
  std::printf("%s %d %s\n", GALAY_KERNEL_VERSION_STRING, v, std::string(to_string((*s)->backend_kind())).c_str());
  return v == 42 ? 0 : 1;
}
