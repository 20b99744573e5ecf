#include "tokens/object_guard.h"

#include <utility>

namespace smime::tokens::internal {

ObjectCreationGuard::~ObjectCreationGuard() {
  // Newest first: writers create the private key first, so a roll-back that
  // stops half-way (the token pulled meanwhile) leaves a private key with
  // less than its certificates, which the user sees and can delete, never
  // certificates without their private key, which a sender could still
  // pick to encrypt to.
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    (void)P11_CALL(module_, C_DestroyObject, session_, *it);
  }
}

std::vector<CK_OBJECT_HANDLE> ObjectCreationGuard::Release() { return std::exchange(created_, {}); }

}  // namespace smime::tokens::internal
