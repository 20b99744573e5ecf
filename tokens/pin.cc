#include "tokens/pin.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/secret_file.h"
#include "common/status_macros.h"

namespace smime::tokens {

SecretBuffer::SecretBuffer(const char* data, size_t size)
    : bytes_(reinterpret_cast<const unsigned char*>(data),
             reinterpret_cast<const unsigned char*>(data) + size) {}

SecretBuffer::SecretBuffer(SecretBuffer&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.bytes_.clear();
}

SecretBuffer& SecretBuffer::operator=(SecretBuffer&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

SecretBuffer::~SecretBuffer() { Wipe(); }

void SecretBuffer::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
}

absl::Status InitSecureHeap(size_t bytes, bool* locked) {
  *locked = false;
  if (CRYPTO_secure_malloc_initialized()) {
    *locked = true;
    return absl::OkStatus();
  }
  switch (CRYPTO_secure_malloc_init(bytes, 16)) {
    case 1:
      *locked = true;
      return absl::OkStatus();
    case 2:  // mapped and excluded from dumps, but mlock failed
      return absl::OkStatus();
    default:
      return absl::InternalError("cannot set up OpenSSL's secure heap for secrets");
  }
}

absl::StatusOr<SecretBuffer> ReadPinFile(const std::string& path) {
  SecretBuffer pin;
  RETURN_IF_ERROR(ReadSecretFile(path, "PIN file", "a PIN",
                                 [&](const char* data, size_t size) { pin = SecretBuffer(data, size); }));
  return pin;
}

absl::StatusOr<SecretBuffer> TakePinFromEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr || value[0] == '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat("environment variable ", name, " is not set or empty"));
  }
  SecretBuffer buf(value, std::strlen(value));
  // Overwrite the environment copy too, then drop the variable.
  OPENSSL_cleanse(const_cast<char*>(value), std::strlen(value));
  ::unsetenv(name.c_str());
  return buf;
}

absl::Status WritePinFile(const std::string& path, const SecretBuffer& pin) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  const unsigned char* p = pin.data();
  size_t left = pin.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<SecretBuffer> RandomPin(size_t hex_chars) {
  static constexpr char kHex[] = "0123456789abcdef";
  SecretBuffer raw(std::string((hex_chars + 1) / 2, '\0').data(), (hex_chars + 1) / 2);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    return absl::InternalError("random generator failed");
  }
  std::string zeros(hex_chars, '0');
  SecretBuffer out(zeros.data(), zeros.size());
  for (size_t i = 0; i < hex_chars; ++i) {
    unsigned char b = raw.data()[i / 2];
    out.data()[i] = static_cast<unsigned char>(kHex[(i % 2 == 0) ? (b >> 4) : (b & 0xf)]);
  }
  return out;
}

}  // namespace smime::tokens
