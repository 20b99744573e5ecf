// Shared by the fuzz targets: the libFuzzer entry point's signature, and a
// small reader that takes typed values off the front of the input so one
// input can choose options as well as supply the bytes.
#ifndef SMIME_TESTS_FUZZ_FUZZ_INPUT_H_
#define SMIME_TESTS_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace smime::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  // One byte of option bits (0 once the input is used up).
  uint8_t Byte() {
    if (rest_.empty()) return 0;
    uint8_t b = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return b;
  }
  // The input up to the first `separator` (or all of it); the separator is
  // consumed.
  absl::string_view Until(char separator) {
    size_t at = rest_.find(separator);
    absl::string_view out = rest_.substr(0, at);
    rest_.remove_prefix(at == absl::string_view::npos ? rest_.size() : at + 1);
    return out;
  }
  absl::string_view Rest() const { return rest_; }

 private:
  absl::string_view rest_;
};

}  // namespace smime::fuzz

#endif  // SMIME_TESTS_FUZZ_FUZZ_INPUT_H_
