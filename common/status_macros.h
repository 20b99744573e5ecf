// Early-return helpers for absl::Status / absl::StatusOr. Abseil 20220623
// ships no such macros, so they live here, once, for every layer.
#ifndef SMIME_COMMON_STATUS_MACROS_H_
#define SMIME_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SMIME_CONCAT_INNER_(a, b) a##b
#define SMIME_CONCAT_(a, b) SMIME_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    if (absl::Status smime_status_ = (expr);           \
        !smime_status_.ok()) {                         \
      return smime_status_;                            \
    }                                                  \
  } while (0)

#define SMIME_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

// `ASSIGN_OR_RETURN(auto x, F());` declares x from an OK StatusOr, or
// returns its Status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  SMIME_ASSIGN_OR_RETURN_IMPL_(SMIME_CONCAT_(smime_statusor_, __LINE__), lhs, expr)

#endif  // SMIME_COMMON_STATUS_MACROS_H_
