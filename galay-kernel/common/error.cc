#include "galay-kernel/common/error.h"

namespace galay {
namespace {
class GalayCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "galay"; }
  std::string message(int ev) const override {
    switch (static_cast<Error>(ev)) {
      case Error::invalid_address:
        return "invalid address (expected an IPv4/IPv6 literal and a port)";
      case Error::misaligned_buffer:
        return "O_DIRECT buffer address is not aligned to the logical block size";
      case Error::misaligned_offset:
        return "O_DIRECT file offset is not aligned to the logical block size";
      case Error::misaligned_length:
        return "O_DIRECT length is not a multiple of the logical block size";
      case Error::backend_unavailable:
        return "the requested I/O backend is not available on this system";
      case Error::task_abandoned:
        return "the task was destroyed before it finished";
      case Error::not_bound_to_scheduler:
        return "no scheduler is running on this thread";
      case Error::channel_closed:
        return "the sender closed the channel and every message was read";
    }
    return "unknown galay error";
  }
};
}  // namespace

const std::error_category& galay_category() noexcept {
  static const GalayCategory category;
  return category;
}
}  // namespace galay
