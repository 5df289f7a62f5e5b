// Helpers for the storage tests: a fresh temporary directory per test, and blunt file edits that
// simulate crashes and disk damage.
#ifndef CONFAB_TESTS_UNIT_STORAGE_TEST_UTIL_H_
#define CONFAB_TESTS_UNIT_STORAGE_TEST_UTIL_H_

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/storage/durable_file.h"

namespace confab::storage::testing {

// A directory under /tmp, created empty and removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/confab-storage-test-XXXXXX";
    const char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << pattern;
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string ReadFile(const std::string& path) {
  absl::StatusOr<std::string> contents = ReadWholeFile(path);
  EXPECT_TRUE(contents.ok()) << contents.status();
  return contents.value_or("");
}

inline void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

inline void AppendToFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// Overwrites bytes at `offset`, in place.
inline void WriteInFile(const std::string& path, uint64_t offset, const std::string& bytes) {
  std::string contents = ReadFile(path);
  ASSERT_LE(offset + bytes.size(), contents.size()) << path;
  contents.replace(offset, bytes.size(), bytes);
  WriteFile(path, contents);
}

inline void FlipByte(const std::string& path, uint64_t offset) {
  std::string contents = ReadFile(path);
  ASSERT_LT(offset, contents.size()) << path;
  contents[offset] = static_cast<char>(contents[offset] ^ 0x5a);
  WriteFile(path, contents);
}

inline uint64_t FileSize(const std::string& path) { return std::filesystem::file_size(path); }

inline void TruncateFile(const std::string& path, uint64_t size) {
  std::filesystem::resize_file(path, size);
}

// Names of the files in `dir` (no paths), sorted.
inline std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace confab::storage::testing

#endif  // CONFAB_TESTS_UNIT_STORAGE_TEST_UTIL_H_
