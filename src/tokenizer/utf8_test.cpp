#include "tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

TEST(Utf8, FindsFirstInvalidByte) {
  EXPECT_EQ(find_invalid_utf8("hello"), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("h\xC3\xA9llo \xF0\x9F\x98\x80"), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xFF"), 2u);
  EXPECT_EQ(find_invalid_utf8("ab\xC0\xAF"), 2u);          // overlong
  EXPECT_EQ(find_invalid_utf8("a\xED\xA0\x80"), 1u);       // surrogate
  EXPECT_EQ(find_invalid_utf8("a\xF4\x90\x80\x80"), 1u);   // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("abc\xE4\xB8"), 3u);         // truncated
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(utf8_lossy("ok"), "ok");
  EXPECT_EQ(utf8_lossy("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  // A truncated 3-byte sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(utf8_lossy("\xE4\xB8" "x"), "\xEF\xBF\xBD" "x");
  EXPECT_EQ(utf8_lossy("\xE4\xB8"), "\xEF\xBF\xBD");
  // Two stray continuation bytes are two subparts.
  EXPECT_EQ(utf8_lossy("\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");
}

TEST(Utf8, CompletePrefixHoldsBackUnfinishedCharacter) {
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix("ab\xF0\x9F"), 2u);
  EXPECT_EQ(complete_utf8_prefix("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_EQ(complete_utf8_prefix("ab\xFF"), 3u);  // invalid, not unfinished: emit as U+FFFD
}

TEST(Utf8, WhiteSpaceIsUnicodeWhiteSpaceWithoutMongolianVowelSeparator) {
  EXPECT_TRUE(is_unicode_white_space(U' '));
  EXPECT_TRUE(is_unicode_white_space(0x3000));
  EXPECT_TRUE(is_unicode_white_space(0x85));
  EXPECT_FALSE(is_unicode_white_space(0x180E));
  EXPECT_FALSE(is_unicode_white_space(0x200B));
}

}  // namespace
}  // namespace dsv3
