// PINs: held in a buffer wiped on destruction, never in a std::string, never
// formatted or logged (STYLE.md §6). The buffer comes from OpenSSL's secure
// heap when the process set one up (the agent does, InitSecureHeap): memory
// locked against swapping and left out of core dumps.
#ifndef SMIME_TOKENS_PIN_H_
#define SMIME_TOKENS_PIN_H_

#include <openssl/crypto.h>

#include <cstddef>
#include <new>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace smime::tokens {

// OPENSSL_secure_malloc for a std::vector: the secure heap when initialised,
// the ordinary heap otherwise; cleared on free either way.
template <typename T>
struct SecureAllocator {
  using value_type = T;
  SecureAllocator() = default;
  template <typename U>
  SecureAllocator(const SecureAllocator<U>&) {}  // NOLINT: rebinding, as std::allocator
  T* allocate(size_t n) {
    void* p = OPENSSL_secure_malloc(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) { OPENSSL_secure_clear_free(p, n * sizeof(T)); }
  friend bool operator==(const SecureAllocator&, const SecureAllocator&) { return true; }
};

// Sets up OpenSSL's secure heap of `bytes` (a power of two) for secrets:
// PINs, passwords and the private numbers of software keys passing through
// (PKCS#12 import). OK also when the pages could not be locked (a low
// RLIMIT_MEMLOCK): `locked` then says false.
absl::Status InitSecureHeap(size_t bytes, bool* locked);

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
  std::vector<unsigned char, SecureAllocator<unsigned char>> bytes_;
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
