#include "engine/io/file_fingerprint.h"

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "engine/check.h"

namespace qtune::io {
namespace {

namespace fs = std::filesystem;

constexpr size_t kHeadBytes = size_t{1} << 20;

// FNV-1a, 64 bits: stable across machines and releases, which std::hash is not.
void mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
}

void mix_file(uint64_t& h, uint64_t& total, const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  QTUNE_CHECK(in.good(), "cannot read ", file.string(), " to fingerprint it");
  std::vector<char> head(kHeadBytes);
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  std::error_code ec;
  const uint64_t size = fs::file_size(file, ec);
  QTUNE_CHECK(!ec, "cannot read the size of ", file.string(), " (", ec.message(), ")");
  mix(h, &size, sizeof size);
  mix(h, head.data(), static_cast<size_t>(in.gcount()));
  total += size;
}

}  // namespace

std::string file_fingerprint(const std::string& path) {
  uint64_t h = 0xcbf29ce484222325ull, total = 0;
  if (fs::is_directory(path)) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.is_regular_file() && entry.path().filename().string().front() != '.') files.push_back(entry.path());
    }
    QTUNE_CHECK(!ec, "cannot list ", path, " to fingerprint it (", ec.message(), ")");
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      const std::string name = file.filename().string();
      mix(h, name.data(), name.size());
      mix_file(h, total, file);
    }
  } else {
    mix_file(h, total, path);
  }
  char text[64];
  std::snprintf(text, sizeof text, "%" PRIu64 " bytes, %016" PRIx64, total, h);
  return text;
}

}  // namespace qtune::io
