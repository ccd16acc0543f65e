#include "galay-kernel/io/registered_buffers.h"

#include <cerrno>
#include <utility>

#include "galay-kernel/io/detail/backend.h"
#include "galay-kernel/runtime/scheduler.h"

namespace galay {

Expected<std::unique_ptr<RegisteredBuffers>> RegisteredBuffers::create(std::size_t size, const MemoryOptions& memory) {
  Scheduler* s = Scheduler::current();
  if (s == nullptr) return make_error(make_error_code(Error::not_bound_to_scheduler));
  return create(*s, size, memory);
}

Expected<std::unique_ptr<RegisteredBuffers>> RegisteredBuffers::create(Scheduler& sched, std::size_t size,
                                                                       const MemoryOptions& memory) {
  if (size == 0) return errno_error(EINVAL);
  auto mem = MappedMemory::map(size, memory);
  if (!mem) return make_error(mem.error());
  std::unique_ptr<RegisteredBuffers> region(new RegisteredBuffers(sched.backend(), std::move(*mem)));
  const std::error_code ec = region->backend_.register_buffers(region->bytes(), region->reason_);
  region->registered_ = !ec;
  return region;
}

RegisteredBuffers::RegisteredBuffers(Backend& backend, MappedMemory memory) noexcept
    : backend_(backend), memory_(std::move(memory)) {}

RegisteredBuffers::~RegisteredBuffers() {
  if (registered_) backend_.unregister_buffers(bytes());
}

std::string RegisteredBuffers::describe() const {
  return (registered_ ? "registered (" : "not registered (") + reason_ + "); " + memory_.describe();
}

}  // namespace galay
