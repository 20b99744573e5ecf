// Line-end canonicalisation and header splitting as the engine streams a
// message: whatever the chunk boundaries, the result is the one the whole
// message gives.
#include "agent/engine/mime.h"

#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"

#include "tests/testing/status_matchers.h"

namespace smime::agent {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;

// Feeds `text` through a canonicaliser in pieces of `piece` bytes.
std::string CanonicalInPieces(absl::string_view text, size_t piece) {
  CrlfCanonicalizer c;
  std::string out;
  for (size_t off = 0; off < text.size(); off += piece) c.Append(text.substr(off, piece), &out);
  return out;
}

struct CrlfCase {
  const char* in;
  const char* want;
};

class CrlfTest : public ::testing::TestWithParam<CrlfCase> {};

TEST_P(CrlfTest, SameForEveryChunking) {
  for (size_t piece = 1; piece <= 8; ++piece) {
    EXPECT_EQ(CanonicalInPieces(GetParam().in, piece), GetParam().want) << "piece " << piece;
  }
  EXPECT_EQ(ToCrlf(GetParam().in), GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(Cases, CrlfTest,
                         ::testing::Values(CrlfCase{"", ""}, CrlfCase{"a\nb\n", "a\r\nb\r\n"},
                                           CrlfCase{"a\r\nb\r\n", "a\r\nb\r\n"},
                                           CrlfCase{"a\rb\r", "a\r\nb\r\n"},
                                           CrlfCase{"\r\n\r\n", "\r\n\r\n"},
                                           CrlfCase{"\n\r", "\r\n\r\n"},
                                           CrlfCase{"\r\r\n\n", "\r\n\r\n\r\n"},
                                           CrlfCase{"x\r\n", "x\r\n"}));

TEST(CrlfTest, CrEndingOnePieceAndLfStartingTheNextAreOneLineEnd) {
  CrlfCanonicalizer c;
  std::string out;
  c.Append("line one\r", &out);
  c.Append("\nline two\n", &out);
  EXPECT_EQ(out, "line one\r\nline two\r\n");
}

// Reads the whole entity out of an EntitySource fed in pieces.
struct Entity {
  std::string outer;
  std::string entity;
};
absl::StatusOr<Entity> ReadEntity(absl::string_view message, size_t piece) {
  StringSource source(message, piece);
  EntitySource entity(&source);
  absl::Status st = entity.ReadHeader();
  if (!st.ok()) return st;
  Entity out{entity.outer_headers(), ""};
  std::string chunk;
  while (entity.Next(&chunk)) out.entity += chunk;
  return out;
}

TEST(EntitySourceTest, SplitsOuterHeadersFromContentFieldsInAnyChunking) {
  const std::string message =
      "From: Alice <alice@example.com>\n"
      "To: bob@example.com\n"
      "Subject: long\n"
      "  subject\n"
      "MIME-Version: 1.0\n"
      "Content-Type: text/plain; charset=utf-8\n"
      "Content-Transfer-Encoding: 8bit\n"
      "\n"
      "body line\r\n"
      "second\rthird\n";
  for (size_t piece : {1, 2, 3, 7, 64, 4096}) {
    auto e = ReadEntity(message, piece);
    ASSERT_THAT(e.status(), IsOk()) << piece;
    EXPECT_EQ(e->outer, "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: long\r\n  subject\r\n")
        << piece;
    EXPECT_EQ(e->entity,
              "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
              "body line\r\nsecond\r\nthird\r\n")
        << piece;
  }
}

TEST(EntitySourceTest, DefaultContentTypeAndBareEntity) {
  auto e = ReadEntity("Subject: x\n\nhello", 3);
  ASSERT_THAT(e.status(), IsOk());
  EXPECT_EQ(e->outer, "Subject: x\r\n");
  EXPECT_EQ(e->entity, "Content-Type: text/plain\r\n\r\nhello");
  e = ReadEntity("\nno header\n", 1);  // a blank first line: no header at all
  ASSERT_THAT(e.status(), IsOk());
  EXPECT_EQ(e->outer, "");
  EXPECT_EQ(e->entity, "Content-Type: text/plain\r\n\r\nno header\r\n");
}

TEST(EntitySourceTest, BlankLineSplitAcrossPieces) {
  // "\r" | "\n\r" | "\n": the header ends inside the third piece.
  StringSource source("A: b\r\n\r\nbody", 5);
  EntitySource entity(&source);
  ASSERT_THAT(entity.ReadHeader(), IsOk());
  EXPECT_EQ(entity.outer_headers(), "A: b\r\n");
}

TEST(EntitySourceTest, RefusesMessagesWithoutHeaderEnd) {
  EXPECT_THAT(ReadEntity("Subject: no body", 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no blank line")));
  EXPECT_THAT(ReadEntity("not a header\n\nbody", 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed header line")));
  std::string endless(EntitySource::kMaxHeaderBytes + 10, 'x');
  EXPECT_THAT(ReadEntity(absl::StrCat("X: ", endless), 65536).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no blank line")));
}

// A source that fails after some data, as a request over its limit does.
class FailingSource final : public ByteSource {
 public:
  bool Next(std::string* chunk) override {
    if (calls_++ == 0) {
      *chunk = "Subject: x\n";
      return true;
    }
    return false;
  }
  absl::Status status() const override {
    return calls_ > 1 ? absl::ResourceExhaustedError("too large") : absl::OkStatus();
  }

 private:
  int calls_ = 0;
};

TEST(EntitySourceTest, SourceFailureIsReportedAsSuch) {
  FailingSource source;
  EntitySource entity(&source);
  EXPECT_THAT(entity.ReadHeader(), StatusIs(absl::StatusCode::kResourceExhausted, "too large"));
}

TEST(BlockingPipeTest, BoundedAndClosable) {
  BlockingPipe pipe(4);
  std::string got;
  std::thread reader([&] {
    std::string chunk;
    while (pipe.Next(&chunk)) {
      EXPECT_LE(chunk.size(), 4u);
      got += chunk;
    }
  });
  EXPECT_TRUE(pipe.Write("0123456789"));
  pipe.CloseWrite(absl::OkStatus());
  reader.join();
  EXPECT_EQ(got, "0123456789");
  EXPECT_THAT(pipe.status(), IsOk());

  BlockingPipe stopped(4);
  stopped.CloseRead();
  EXPECT_FALSE(stopped.Write("more than four"));  // does not block
  BlockingPipe failed(4);
  failed.CloseWrite(absl::AbortedError("signing failed"));
  std::string chunk;
  EXPECT_FALSE(failed.Next(&chunk));
  EXPECT_THAT(failed.status(), StatusIs(absl::StatusCode::kAborted, "signing failed"));
}

}  // namespace
}  // namespace smime::agent
