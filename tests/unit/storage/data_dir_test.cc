#include "server/storage/data_dir.h"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/durable_file.h"
#include "tests/unit/storage/test_util.h"

namespace confab::storage {
namespace {

using ::testing::HasSubstr;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

std::unique_ptr<DataDir> OpenDir(const std::string& path) {
  absl::StatusOr<std::unique_ptr<DataDir>> dir = DataDir::Open(path);
  EXPECT_TRUE(dir.ok()) << dir.status();
  return dir.ok() ? *std::move(dir) : nullptr;
}

TEST(DataDirTest, CreatesLayoutAndRecordsOurPid) {
  TempDir tmp;
  const std::string path = tmp.path() + "/a/b/data";
  std::unique_ptr<DataDir> dir = OpenDir(path + "/");
  ASSERT_NE(dir, nullptr);
  EXPECT_EQ(dir->path(), path);
  EXPECT_EQ(dir->log_dir(), path + "/log");
  EXPECT_EQ(dir->snap_dir(), path + "/snap");
  EXPECT_TRUE(std::filesystem::is_directory(dir->log_dir()));
  EXPECT_TRUE(std::filesystem::is_directory(dir->snap_dir()));
  EXPECT_EQ(ReadFile(path + "/LOCK"), absl::StrCat(::getpid(), "\n"));
}

TEST(DataDirTest, SecondOpenIsRefusedNamingThePid) {
  TempDir tmp;
  std::unique_ptr<DataDir> first = OpenDir(tmp.path());
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<DataDir>> second = DataDir::Open(tmp.path());
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(tmp.path()));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(absl::StrCat("pid ", ::getpid())));
  // The refused open must not have clobbered the holder's pid.
  EXPECT_EQ(ReadFile(tmp.path() + "/LOCK"), absl::StrCat(::getpid(), "\n"));

  first.reset();
  EXPECT_NE(OpenDir(tmp.path()), nullptr);
}

TEST(DataDirTest, UncreatableDirectoryIsNamed) {
  TempDir tmp;
  WriteFile(tmp.path() + "/file", "not a directory");
  const std::string path = tmp.path() + "/file/data";
  absl::StatusOr<std::unique_ptr<DataDir>> dir = DataDir::Open(path);
  ASSERT_FALSE(dir.ok());
  EXPECT_THAT(std::string(dir.status().message()), HasSubstr(tmp.path() + "/file"));
  EXPECT_THAT(std::string(dir.status().message()), HasSubstr("not a directory"));
}

TEST(DataDirTest, EpochsRoundTrip) {
  TempDir tmp;
  std::unique_ptr<DataDir> dir = OpenDir(tmp.path());
  for (const char* name : {"accepted_epoch", "current_epoch"}) {
    absl::StatusOr<Epoch> epoch = dir->ReadEpoch(name);
    ASSERT_TRUE(epoch.ok()) << epoch.status();
    EXPECT_EQ(*epoch, 0u) << "a missing record reads as 0";
  }
  ASSERT_TRUE(dir->WriteEpoch("accepted_epoch", 7).ok());
  ASSERT_TRUE(dir->WriteEpoch("current_epoch", 6).ok());
  ASSERT_TRUE(dir->WriteEpoch("accepted_epoch", 4294967295u).ok());
  EXPECT_EQ(ReadFile(tmp.path() + "/current_epoch"), "6\n");
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/current_epoch.tmp"));

  dir.reset();
  dir = OpenDir(tmp.path());
  EXPECT_EQ(*dir->ReadEpoch("accepted_epoch"), 4294967295u);
  EXPECT_EQ(*dir->ReadEpoch("current_epoch"), 6u);
}

TEST(DataDirTest, MalformedEpochIsRefusedNamingFileAndContent) {
  TempDir tmp;
  std::unique_ptr<DataDir> dir = OpenDir(tmp.path());
  const std::string file = tmp.path() + "/current_epoch";
  for (const char* contents : {"", "12", "abc\n", "-1\n", "1 2\n", "4294967296\n", "\n", "7\n\n"}) {
    WriteFile(file, contents);
    absl::StatusOr<Epoch> epoch = dir->ReadEpoch("current_epoch");
    ASSERT_FALSE(epoch.ok()) << "\"" << contents << "\" read as " << *epoch;
    EXPECT_TRUE(absl::IsDataLoss(epoch.status())) << epoch.status();
    EXPECT_THAT(std::string(epoch.status().message()), HasSubstr(file));
  }
  WriteFile(file, "abc\n");
  EXPECT_THAT(std::string(dir->ReadEpoch("current_epoch").status().message()),
              HasSubstr("\"abc\\n\""));
}

TEST(DataDirTest, UnknownEpochRecordIsRefused) {
  TempDir tmp;
  std::unique_ptr<DataDir> dir = OpenDir(tmp.path());
  EXPECT_TRUE(absl::IsInvalidArgument(dir->ReadEpoch("acceptedEpoch").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(dir->WriteEpoch("../x", 1)));
}

TEST(DurableFileTest, WriteFileDurablyReplacesAndReadWholeFileReads) {
  TempDir tmp;
  const std::string path = tmp.path() + "/f";
  EXPECT_TRUE(absl::IsNotFound(ReadWholeFile(path).status()));
  ASSERT_TRUE(WriteFileDurably(path, "first").ok());
  ASSERT_TRUE(WriteFileDurably(path, std::string(100000, 'z')).ok());
  absl::StatusOr<std::string> contents = ReadWholeFile(path);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(*contents, std::string(100000, 'z'));
  absl::Status s = WriteFileDurably(tmp.path() + "/missing/f", "x");
  EXPECT_THAT(std::string(s.message()), HasSubstr(tmp.path() + "/missing/f"));
  EXPECT_TRUE(absl::IsNotFound(SyncDirectory(tmp.path() + "/missing")));
}

}  // namespace
}  // namespace confab::storage
