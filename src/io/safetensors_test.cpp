#include "io/safetensors.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "io/safetensors_writer.h"
#include "io/test_files.h"

namespace dsv3 {
namespace {

// A safetensors file from a raw header text and a data section.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

// Opening must throw Error whose message contains every fragment.
void expect_error(const std::string& bytes, std::initializer_list<std::string> fragments) {
  test::TempDir dir;
  const std::string path = dir.file("x.safetensors");
  test::write_file(path, bytes);
  try {
    SafetensorsFile f(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;  // names the file
    for (const auto& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << msg;
  }
}

TEST(Safetensors, ReadsWhatTheWriterWrites) {
  test::TempDir dir;
  const std::vector<uint16_t> a{1, 2, 3, 4, 5, 6};
  const std::vector<uint8_t> b{7, 8, 9};
  write_safetensors(dir.file("m.safetensors"),
                    {{"b.weight", DType::F8_E4M3, {3}, b},
                     {"a.weight", DType::BF16, {2, 3}, {reinterpret_cast<const uint8_t*>(a.data()), 12}}},
                    {{"format", "pt"}});
  SafetensorsFile f(dir.file("m.safetensors"));
  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorInfo* t = f.find("a.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::BF16);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(reinterpret_cast<const uint16_t*>(t->data)[5], 6);
  EXPECT_EQ(f.find("b.weight")->data[2], 9);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.find("c"), nullptr);
  // Data starts 8-byte aligned: the header is padded with spaces.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.find("a.weight")->data) % 8, 0u);
}

TEST(Safetensors, TruncatedFile) {
  expect_error("abc", {"truncated"});
  const std::string good =
      make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'));
  expect_error(good.substr(0, good.size() - 3), {"'w'", "run past the end", "truncated"});
}

TEST(Safetensors, HeaderLengthPastEnd) {
  std::string bytes = make_file("{}", "");
  bytes[0] = char(200);
  expect_error(bytes, {"header length 200", "past the end"});
}

TEST(Safetensors, InvalidHeaderJson) {
  expect_error(make_file(R"({"w": {"dtype": )", ""), {"invalid JSON"});
  expect_error(make_file("[1,2]", ""), {"not a JSON object"});
}

TEST(Safetensors, OffsetsOutOfRangeOrBackwards) {
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", std::string(8, '\0')),
               {"'w'", "[0, 16]", "past the end"});
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", std::string(8, '\0')),
               {"'w'", "backwards"});
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", std::string(8, '\0')),
               {"'w'", "data_offsets"});
}

TEST(Safetensors, SizeDoesNotMatchShape) {
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
               {"'w'", "hold 8 bytes", "needs 12"});
}

TEST(Safetensors, OverlappingTensors) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         std::string(12, '\0')),
               {"'a'", "'b'", "overlapping"});
}

TEST(Safetensors, UnknownDtypeAndBadShape) {
  expect_error(make_file(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0')),
               {"'w'", "unsupported dtype 'Q4'"});
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,0]}})", ""), {"'w'", "shape"});
  expect_error(make_file(R"({"w":{"dtype":"F32","data_offsets":[0,0]}})", ""), {"'w'", "'shape'"});
}

TEST(Safetensors, MissingFile) {
  try {
    SafetensorsFile f("/nonexistent/dir/model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.safetensors"), std::string::npos);
  }
}

}  // namespace
}  // namespace dsv3
