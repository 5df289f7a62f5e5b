#include "server/common/path.h"

#include <string>

#include "gtest/gtest.h"
#include "server/common/errors.h"

namespace confab {
namespace {

TEST(ValidatePathTest, AcceptsWellFormedPaths) {
  for (const char* path : {"/", "/a", "/a/b", "/superset/config/ROW_LIMIT", "/a-b_c.d/e f",
                           "/\xc3\xa9t\xc3\xa9", "/..a", "/a./b"}) {
    EXPECT_TRUE(ValidatePath(path).ok()) << path;
  }
}

TEST(ValidatePathTest, RejectsMalformedPathsNamingTheProblem) {
  struct Case {
    std::string path;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {"", "empty"},
           {"a/b", "must start with '/'"},
           {"/a/", "must not end with '/'"},
           {"/a//b", "empty component"},
           {"/a/./b", "\".\" is not allowed"},
           {"/a/..", "\"..\" is not allowed"},
           {std::string("/a\0b", 4), "control character"},
           {"/a\nb", "control character"},
           {"/a\x7f", "control character"},
           {"/" + std::string(kMaxPathBytes, 'x'), "the limit is"},
       }) {
    absl::Status status = ValidatePath(c.path);
    EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_PATH) << c.path;
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find(c.why), std::string::npos) << status.message();
  }
}

TEST(PathTest, ParentAndBaseName) {
  EXPECT_EQ(ParentPath("/a"), "/");
  EXPECT_EQ(ParentPath("/a/b/c"), "/a/b");
  EXPECT_EQ(BaseName("/a/b/c"), "c");
  EXPECT_EQ(BaseName("/a"), "a");
}

TEST(PathTest, Subtree) {
  EXPECT_TRUE(IsInSubtree("/a/b", "/a"));
  EXPECT_TRUE(IsInSubtree("/a", "/a"));
  EXPECT_TRUE(IsInSubtree("/a", "/"));
  EXPECT_FALSE(IsInSubtree("/ab", "/a"));
  EXPECT_FALSE(IsInSubtree("/a", "/a/b"));
}

}  // namespace
}  // namespace confab
