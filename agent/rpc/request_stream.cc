#include "agent/rpc/request_stream.h"

#include "absl/strings/str_cat.h"

namespace smime::agent {

// What a request over the limit hears: which limit, and where it is set.
absl::Status TooLarge(size_t max_message_bytes, bool encoded) {
  if (encoded) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the signed or encrypted input is larger than the agent's limit of ",
        HumanBytes(MaxEncodedBytes(max_message_bytes)), " (for messages of up to ",
        HumanBytes(max_message_bytes), "; the agent's --max-message-bytes)"));
  }
  return absl::ResourceExhaustedError(absl::StrCat("the message is larger than the agent's limit of ",
                                                   HumanBytes(max_message_bytes),
                                                   " (the agent's --max-message-bytes)"));
}

absl::Status BudgetSpent(const CallLimits& limits) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "the agent holds ", HumanBytes(limits.bytes_in_flight()), " of messages in flight, its limit of ",
      HumanBytes(limits.options().max_bytes_in_flight), " (max_bytes_in_flight); try again shortly"));
}

}  // namespace smime::agent
