#include "galay-kernel/common/mapped_memory.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "galay-kernel/common/detail/memory_policy.h"

namespace galay {
namespace {

std::string errno_text(int err) { return std::error_code(err, std::system_category()).message(); }

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::size_t read_huge_page_size() noexcept {
#if defined(__linux__)
  std::FILE* f = std::fopen("/proc/meminfo", "re");
  if (f == nullptr) return 0;
  char line[128];
  std::size_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long v = 0;
    if (std::sscanf(line, "Hugepagesize: %lu kB", &v) == 1) {
      kib = v;
      break;
    }
  }
  std::fclose(f);
  return kib * 1024;
#else
  return 0;
#endif
}

}  // namespace

namespace detail {

std::string format_bytes(std::size_t n) {
  if (n != 0 && n % (std::size_t(1) << 30) == 0) return std::to_string(n >> 30) + " GiB";
  if (n != 0 && n % (std::size_t(1) << 20) == 0) return std::to_string(n >> 20) + " MiB";
  if (n != 0 && n % (std::size_t(1) << 10) == 0) return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " B";
}

std::string huge_page_refusal(int err) {
  if (err == ENOMEM) return "huge pages: none free (reserve them in /proc/sys/vm/nr_hugepages)";
  return "huge pages: refused (" + errno_text(err) + ")";
}

std::string huge_page_absent() {
  return MappedMemory::huge_page_size() == 0 ? "huge pages: none on this system" : std::string();
}

std::string huge_page_too_small(std::size_t size) {
  const std::size_t huge = MappedMemory::huge_page_size();
  if (huge == 0 || size >= huge) return {};
  return "huge pages: smaller than one " + format_bytes(huge) + " huge page";
}

std::string lock_pages(void* p, std::size_t n, bool& locked) {
  locked = false;
  if (::mlock(p, n) == 0) {
    locked = true;
    return "locked";
  }
  std::string note = "not locked (mlock refused: " + errno_text(errno);
  rlimit lim{};
  if (::getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
    note += "; RLIMIT_MEMLOCK is " + format_bytes(lim.rlim_cur) + ", this needs " + format_bytes(n);
  return note + ")";
}

std::string describe_mapping(std::size_t size, std::size_t page_size, bool huge, const std::string& huge_note,
                             bool populate_asked, const std::string& lock_note) {
  std::string d = format_bytes(size) + " in " + format_bytes(page_size) + (huge ? " huge pages" : " pages");
  if (!huge_note.empty()) d += " (" + huge_note + ")";
#if defined(MAP_POPULATE)
  d += populate_asked ? ", populated" : ", not populated (not asked)";
#else
  d += populate_asked ? ", not populated (no MAP_POPULATE on this platform)" : ", not populated (not asked)";
#endif
  return d + ", " + lock_note;
}

}  // namespace detail

std::size_t MappedMemory::huge_page_size() noexcept {
  static const std::size_t size = read_huge_page_size();
  return size;
}

Expected<MappedMemory> MappedMemory::map(std::size_t size, const MemoryOptions& options, std::size_t alignment) {
  if (size == 0 || (alignment & (alignment - 1)) != 0) return errno_error(EINVAL);
  const auto small_page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (size > (std::size_t(1) << 62) || alignment > (std::size_t(1) << 40)) return errno_error(ENOMEM);

  MappedMemory m;
  m.size_ = size;
  std::string huge_note;  // why huge pages were not used, when they were asked for
  void* p = MAP_FAILED;
  int populate_flag = 0;
#if defined(MAP_POPULATE)
  if (options.populate) populate_flag = MAP_POPULATE;
#endif

  // 1. Huge pages.
  const std::size_t huge = huge_page_size();
  if (options.huge_pages) huge_note = detail::huge_page_absent();
  if (options.huge_pages && huge_note.empty()) huge_note = detail::huge_page_too_small(size);
  if (options.huge_pages && huge_note.empty()) {
#if defined(MAP_HUGETLB)
    const std::size_t align = alignment > huge ? alignment : huge;
    const std::size_t length = round_up(size, huge) + (align > huge ? align : 0);
    p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | populate_flag, -1,
               0);
    if (p != MAP_FAILED) {
      m.huge_ = true;
      m.page_size_ = huge;
      m.base_length_ = length;
    } else {
      huge_note = detail::huge_page_refusal(errno);
    }
#else
    huge_note = "huge pages: no MAP_HUGETLB on this platform";
#endif
  }

  // 2. Ordinary pages (pre-faulting applies to either).
  if (p == MAP_FAILED) {
    const std::size_t length = round_up(size, small_page) + (alignment > small_page ? alignment : 0);
    p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | populate_flag, -1, 0);
    if (p == MAP_FAILED) return errno_error(errno);
    m.page_size_ = small_page;
    m.base_length_ = length;
  }
  m.base_ = static_cast<std::byte*>(p);
  const std::size_t align = alignment > m.page_size_ ? alignment : m.page_size_;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  m.data_ = m.base_ + (round_up(addr, align) - addr);
  m.mapped_ = round_up(size, m.page_size_);
  m.populated_ = populate_flag != 0;

  // 3. Locking.
  const std::string lock_note =
      options.lock ? detail::lock_pages(m.data_, m.mapped_, m.locked_) : std::string("not locked (not asked)");
  m.description_ = detail::describe_mapping(size, m.page_size_, m.huge_, huge_note, options.populate, lock_note);
  return m;
}

MappedMemory::MappedMemory(MappedMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)),
      base_length_(std::exchange(o.base_length_, 0)),
      page_size_(o.page_size_),
      huge_(o.huge_),
      populated_(o.populated_),
      locked_(o.locked_),
      description_(std::move(o.description_)) {}

MappedMemory& MappedMemory::operator=(MappedMemory&& o) noexcept {
  if (this != &o) {
    unmap();
    data_ = std::exchange(o.data_, nullptr);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
    base_length_ = std::exchange(o.base_length_, 0);
    page_size_ = o.page_size_;
    huge_ = o.huge_;
    populated_ = o.populated_;
    locked_ = o.locked_;
    description_ = std::move(o.description_);
  }
  return *this;
}

MappedMemory::~MappedMemory() { unmap(); }

void MappedMemory::unmap() noexcept {
  // munmap drops the lock with the pages; no munlock needed.
  if (base_ != nullptr) ::munmap(base_, base_length_);
  base_ = data_ = nullptr;
  size_ = mapped_ = base_length_ = 0;
}

}  // namespace galay
