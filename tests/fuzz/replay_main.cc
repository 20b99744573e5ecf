// Replays inputs through a fuzz target's LLVMFuzzerTestOneInput without
// libFuzzer, so the normal build's test run feeds every seed and every
// crash found so far (tests/fuzz/regressions/TARGET) through the same code.
//
//   fuzz_replay_TARGET PATH... [--ext=.a,.b PATH...]
//
// A PATH that is a directory is walked recursively; after --ext only files
// with one of those endings are taken from the directories that follow
// (files named directly are always taken). Prints how many inputs ran; exits non-zero
// when a path is missing or nothing was replayed.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

bool Wanted(const std::filesystem::path& p, const std::vector<std::string>& exts) {
  if (exts.empty()) return true;
  for (const std::string& e : exts) {
    if (absl::EndsWithIgnoreCase(p.filename().string(), e)) return true;
  }
  return false;
}

void Run(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> exts;
  size_t count = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (absl::StartsWith(arg, "--ext=")) {
      exts = absl::StrSplit(arg.substr(6), ',', absl::SkipEmpty());
      continue;
    }
    std::filesystem::path p(arg);
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
        if (e.is_regular_file() && Wanted(e.path(), exts)) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        Run(f);
        ++count;
      }
    } else if (std::filesystem::is_regular_file(p, ec)) {
      Run(p);
      ++count;
    } else if (!std::filesystem::exists(p, ec)) {
      std::cerr << "fuzz replay: no such path: " << arg << "\n";
      return 2;
    }
  }
  std::cout << "fuzz replay: " << count << " inputs ran\n";
  return count > 0 ? 0 : 1;
}
