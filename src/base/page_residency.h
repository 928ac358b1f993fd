// How much of a memory range this process has mapped in (its page table holds the page), read
// from /proc/self/pagemap. Unlike mincore, which reports the page cache and so every page any
// process read from the file, this tells whether *we* touched (or prefetched) a mapped tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace dsv3 {

// Bytes of the pages overlapping [p, p + n) that are present in this process's page table
// (whole pages, so up to one page more at each end). nullopt where /proc/self/pagemap cannot be
// read (not Linux, or a sandbox without /proc). The kernel maps up to 16 neighbouring pages on a
// fault in a file mapping (fault-around), so a range next to touched memory may show ~64 KiB.
std::optional<uint64_t> resident_bytes(const void* p, size_t n);

}  // namespace dsv3
