#include "client/terminal_text.h"

#include <string>

#include "gtest/gtest.h"

namespace smime::client {
namespace {

TEST(PrintableTest, OrdinaryTextIsUnchanged) {
  EXPECT_EQ(Printable("Alice Example <alice@example.com>"), "Alice Example <alice@example.com>");
  EXPECT_EQ(Printable("Zoë Łukasz 日本 😀 \xc2\xa0nbsp"), "Zoë Łukasz 日本 😀 \xc2\xa0nbsp");
  EXPECT_EQ(Printable("CN=a\\,b /O=x"), "CN=a\\,b /O=x");
  EXPECT_EQ(Printable(""), "");
}

TEST(PrintableTest, C0AndDelAreShownAsBytes) {
  EXPECT_EQ(Printable("a\rb\nc\td"), "a\\x0db\\x0ac\\x09d");
  EXPECT_EQ(Printable(std::string("nul\0end", 7)), "nul\\x00end");
  EXPECT_EQ(Printable("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
  EXPECT_EQ(Printable("bell\a del\x7f us\x1f"), "bell\\x07 del\\x7f us\\x1f");
}

TEST(PrintableTest, C1ControlsAreShownAsCodePoints) {
  EXPECT_EQ(Printable("\xc2\x80"), "\\u0080");
  EXPECT_EQ(Printable("csi\xc2\x9b" "2J"), "csi\\u009b2J");
  EXPECT_EQ(Printable("\xc2\x9f\xc2\xa0"), "\\u009f\xc2\xa0");
}

TEST(PrintableTest, BytesThatAreNotUtf8AreShownAsBytes) {
  // A lone 8-bit CSI, which some terminals act on.
  EXPECT_EQ(Printable("a\x9b" "2Jb"), "a\\x9b2Jb");
  EXPECT_EQ(Printable("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(Printable("\xe2\x82"), "\\xe2\\x82");          // cut short
  EXPECT_EQ(Printable("\xc0\xaf"), "\\xc0\\xaf");          // overlong '/'
  EXPECT_EQ(Printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
}

TEST(PrintableTest, AForgedLineStaysOnTheLine) {
  std::string out = Printable("ceo@example.com\r\nsmimectl: good signature from CEO");
  EXPECT_EQ(out.find('\n'), std::string::npos);
  EXPECT_EQ(out.find('\r'), std::string::npos);
}

}  // namespace
}  // namespace smime::client
