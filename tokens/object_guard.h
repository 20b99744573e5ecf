// All or nothing for writes that create several token objects: a guard
// that destroys the objects created so far unless the write got to the end
// and released it.
#ifndef SMIME_TOKENS_OBJECT_GUARD_H_
#define SMIME_TOKENS_OBJECT_GUARD_H_

#include <p11-kit/pkcs11.h>

#include <vector>

#include "tokens/module.h"

namespace smime::tokens::internal {

class ObjectCreationGuard {
 public:
  ObjectCreationGuard(Module& module, CK_SESSION_HANDLE session) : module_(module), session_(session) {}
  ObjectCreationGuard(const ObjectCreationGuard&) = delete;
  ObjectCreationGuard& operator=(const ObjectCreationGuard&) = delete;
  // Destroys every object added and not released, newest first (best
  // effort: the write already failed, and its error is the one to report).
  ~ObjectCreationGuard();

  // An object the write created.
  void Add(CK_OBJECT_HANDLE object) { created_.push_back(object); }
  // The write succeeded: the objects stay. Returns them in creation order.
  std::vector<CK_OBJECT_HANDLE> Release();

 private:
  Module& module_;
  const CK_SESSION_HANDLE session_;
  std::vector<CK_OBJECT_HANDLE> created_;
};

}  // namespace smime::tokens::internal

#endif  // SMIME_TOKENS_OBJECT_GUARD_H_
