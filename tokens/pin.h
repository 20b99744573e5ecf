// PINs: held in a buffer wiped on destruction, never in a std::string, never
// formatted or logged (STYLE.md §6).
#ifndef SMIME_TOKENS_PIN_H_
#define SMIME_TOKENS_PIN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace smime::tokens {

class SecretBuffer {
 public:
  SecretBuffer() = default;
  SecretBuffer(const char* data, size_t size);
  SecretBuffer(const SecretBuffer&) = delete;
  SecretBuffer& operator=(const SecretBuffer&) = delete;
  SecretBuffer(SecretBuffer&& other) noexcept;
  SecretBuffer& operator=(SecretBuffer&& other) noexcept;
  ~SecretBuffer();

  const unsigned char* data() const { return bytes_.data(); }
  unsigned char* data() { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  void Wipe();

 private:
  std::vector<unsigned char> bytes_;
};

// Reads a PIN from `path`: a regular file that neither group nor others can
// read or write (chmod 600), owned by this user or root. One trailing newline
// (LF or CRLF) is dropped. An empty PIN is an error.
absl::StatusOr<SecretBuffer> ReadPinFile(const std::string& path);

// Reads a PIN from environment variable `name` and removes the variable from
// this process's environment, so child processes never inherit it.
absl::StatusOr<SecretBuffer> TakePinFromEnv(const std::string& name);

// Writes `pin` to a new file `path` with mode 0600 (fails if it exists).
absl::Status WritePinFile(const std::string& path, const SecretBuffer& pin);

// A random PIN of `hex_chars` hexadecimal characters.
absl::StatusOr<SecretBuffer> RandomPin(size_t hex_chars);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_PIN_H_
