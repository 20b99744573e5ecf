#include "tokens/key.h"

#include "absl/strings/str_cat.h"
#include "tokens/hex.h"

namespace smime::tokens {

std::string Key::id_hex() const { return HexEncode(id_); }

bool Key::RetiredAt(absl::Time now) const {
  if (end_date_.empty()) return false;
  return end_date_ <= absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone());
}

std::string Describe(const Key& key) { return absl::StrCat("key \"", key.label(), "\" (id ", key.id_hex(), ")"); }

}  // namespace smime::tokens
