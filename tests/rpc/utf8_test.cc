// UTF-8 repair for text that goes into protobuf string fields.
#include "common/utf8.h"

#include <gtest/gtest.h>

#include "agent/rpc/convert.h"

namespace smime {
namespace {

constexpr char kFffd[] = "\xEF\xBF\xBD";

struct Case {
  std::string name;
  std::string in;
  std::string out;  // what ToValidUtf8 makes of it
};

class Utf8Test : public ::testing::TestWithParam<Case> {};

TEST_P(Utf8Test, RepairsOnlyWhatIsBroken) {
  const Case& c = GetParam();
  EXPECT_EQ(IsValidUtf8(c.in), c.in == c.out);
  EXPECT_EQ(ToValidUtf8(c.in), c.out);
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8(c.in)));
}

INSTANTIATE_TEST_SUITE_P(
    Sequences, Utf8Test,
    ::testing::Values(Case{"Ascii", "alice@example.com", "alice@example.com"},
                      Case{"Empty", "", ""},
                      Case{"TwoThreeFourBytes", "J\xC3\xBCrgen \xE2\x82\xAC \xF0\x9F\x94\x91",
                           "J\xC3\xBCrgen \xE2\x82\xAC \xF0\x9F\x94\x91"},
                      Case{"Latin1Byte", "J\xFCrgen", std::string("J") + kFffd + "rgen"},
                      Case{"LoneContinuation", "a\x81z", std::string("a") + kFffd + "z"},
                      Case{"Truncated", "x\xE2\x82", std::string("x") + kFffd + kFffd},
                      Case{"OverlongSlash", "\xC0\xAF", std::string(kFffd) + kFffd},
                      Case{"OverlongThree", "\xE0\x80\xAF", std::string(kFffd) + kFffd + kFffd},
                      Case{"Surrogate", "\xED\xA0\x80", std::string(kFffd) + kFffd + kFffd},
                      Case{"AboveMax", "\xF4\x90\x80\x80", std::string(kFffd) + kFffd + kFffd + kFffd},
                      Case{"MaxCodePoint", "\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF"},
                      Case{"NulIsValid", std::string("a\0b", 3), std::string("a\0b", 3)}),
    [](const ::testing::TestParamInfo<Case>& p) { return p.param.name; });

TEST(MakeUtf8Valid, ReachesNestedAndRepeatedStringsAndLeavesBytesAlone) {
  agent::v1::VerifyResponse head;
  agent::v1::Signer* s = head.mutable_result()->add_signers();
  s->set_subject("CN=J\xFCrgen");
  s->add_emails("ok@example.com");
  s->add_emails("bad\x81@example.com");
  head.mutable_result()->set_from_mismatch("x\xFF");
  agent::MakeUtf8Valid(&head);
  EXPECT_EQ(head.result().signers(0).subject(), std::string("CN=J") + kFffd + "rgen");
  EXPECT_EQ(head.result().signers(0).emails(0), "ok@example.com");
  EXPECT_EQ(head.result().signers(0).emails(1), std::string("bad") + kFffd + "@example.com");
  EXPECT_EQ(head.result().from_mismatch(), std::string("x") + kFffd);
  // bytes fields carry binary data and stay as they are.
  agent::v1::VerifyResponse data;
  const std::string binary("\xFF\x00\x81", 3);
  data.set_data(binary);
  agent::MakeUtf8Valid(&data);
  EXPECT_EQ(data.data(), binary);
}

}  // namespace
}  // namespace smime
