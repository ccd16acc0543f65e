#pragma once
/// @file memory_policy.h
/// Internal: the steps of MappedMemory's policy (common/mapped_memory.h) that a mapping it
/// does not make itself reuses, so the IPC channel's shared ring (a memfd, mapped by two
/// processes) follows the same rules and reports them in the same words.

#include <cstddef>
#include <string>

namespace galay::detail {

/// "4 KiB", "2 MiB", "10000 B": exact, in the largest unit that divides `n`.
std::string format_bytes(std::size_t n);
/// Why a huge-page mapping (or hugetlb memfd) was refused with `err`.
std::string huge_page_refusal(int err);
/// The note for a region too small for one huge page, or "" when it is large enough (or
/// huge pages don't exist here: then huge_page_absent() explains).
std::string huge_page_too_small(std::size_t size);
/// "huge pages: none on this system", or "" when the system has them.
std::string huge_page_absent();
/// mlock [p, p + n): "locked", or "not locked (mlock refused: why; RLIMIT_MEMLOCK ...)".
std::string lock_pages(void* p, std::size_t n, bool& locked);
/// The whole description: "<size> in <page> [huge ]pages[ (huge note)], <populate>, <lock>".
std::string describe_mapping(std::size_t size, std::size_t page_size, bool huge, const std::string& huge_note,
                             bool populate_asked, const std::string& lock_note);

}  // namespace galay::detail
