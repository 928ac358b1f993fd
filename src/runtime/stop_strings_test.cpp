#include "runtime/stop_strings.h"

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

TEST(StopStrings, ReleasesTextThatCannotStartAStop) {
  StopStrings s({"STOP"});
  EXPECT_EQ(s.push("hello "), "hello ");
  EXPECT_EQ(s.push("wor"), "wor");
  EXPECT_EQ(s.push("ld ST"), "ld ");  // "ST" may begin "STOP"
  EXPECT_EQ(s.push("AY"), "STAY");
  EXPECT_EQ(s.flush(), "");
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.text(), "hello world STAY");
}

TEST(StopStrings, StopsAcrossPiecesAndDropsTheRest) {
  StopStrings s({"\n\n", "User:"});
  EXPECT_EQ(s.push("a"), "a");
  EXPECT_EQ(s.push("b\n"), "b");
  EXPECT_EQ(s.push("\nmore"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.push("x"), "");
  EXPECT_EQ(s.flush(), "");
  EXPECT_EQ(s.text(), "ab");
}

TEST(StopStrings, EarliestStopWinsAndHeldTailFlushes) {
  StopStrings s({"cd", "bcd"});
  EXPECT_EQ(s.push("abcde"), "a");
  StopStrings t({"xyz"});
  EXPECT_EQ(t.push("abxy"), "ab");
  EXPECT_EQ(t.flush(), "xy");
  StopStrings none({});
  EXPECT_EQ(none.push("anything"), "anything");
}

}  // namespace
}  // namespace dsv3
