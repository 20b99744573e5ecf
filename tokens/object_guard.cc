#include "tokens/object_guard.h"

#include <utility>

namespace smime::tokens::internal {

ObjectCreationGuard::~ObjectCreationGuard() {
  // In creation order: writers create the private key first, so a roll-back
  // that stops half-way never leaves the rest of a key without its private
  // part being gone first.
  for (CK_OBJECT_HANDLE object : created_) (void)P11_CALL(module_, C_DestroyObject, session_, object);
}

std::vector<CK_OBJECT_HANDLE> ObjectCreationGuard::Release() { return std::exchange(created_, {}); }

}  // namespace smime::tokens::internal
