// The call gate: who may call, and the one deadline a call is bound by.
#include "agent/rpc/call_gate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>

#include "absl/time/time.h"
#include "agent/rpc/audit.h"
#include "agent/rpc/listener.h"

namespace smime::agent {
namespace {

using std::chrono::system_clock;

const absl::Time kArrival = absl::FromUnixSeconds(1'700'000'000);
constexpr absl::Duration kDefault = absl::Seconds(30);

TEST(CallDeadlineTest, NoClientDeadlineMeansTheDefaultFromArrival) {
  EXPECT_EQ(CallDeadline(system_clock::time_point::max(), kArrival, kDefault), kArrival + kDefault);
}

TEST(CallDeadlineTest, AnEarlierClientDeadlineWins) {
  absl::Time client = kArrival + absl::Seconds(5);
  EXPECT_EQ(CallDeadline(absl::ToChronoTime(client), kArrival, kDefault), client);
}

TEST(CallDeadlineTest, ALaterClientDeadlineIsCappedAtTheDefault) {
  absl::Time client = kArrival + absl::Hours(1);
  EXPECT_EQ(CallDeadline(absl::ToChronoTime(client), kArrival, kDefault), kArrival + kDefault);
}

class CallGateTest : public ::testing::Test {
 protected:
  PeerCred Own() const { return PeerCred{::geteuid(), ::getpid(), ::getegid()}; }

  absl::Time now_ = kArrival;
  PeerRegistry peers_;
  AuditLog audit_;
  CallGate gate_{nullptr, &peers_, &audit_, kDefault, "t", [this] { return now_; }};
};

// A call without a client deadline keeps the deadline it was admitted with
// however long its steps take: every step uses Call::deadline, and nothing
// computes a fresh default later.
TEST_F(CallGateTest, TheDeadlineIsFixedWhenTheCallIsAdmitted) {
  absl::StatusOr<Call> call = gate_.Admit(Own(), system_clock::time_point::max());
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_EQ(call->deadline, kArrival + kDefault);
  now_ += absl::Seconds(20);  // the call's first step took a while
  EXPECT_EQ(call->deadline, kArrival + kDefault);
  // A call arriving now gets its own.
  absl::StatusOr<Call> later = gate_.Admit(Own(), system_clock::time_point::max());
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->deadline, kArrival + absl::Seconds(20) + kDefault);
}

TEST_F(CallGateTest, TheCallerIsTheAgentsUidOrRoot) {
  absl::StatusOr<Call> own = gate_.Admit(Own(), system_clock::time_point::max());
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->peer.pid, ::getpid());
  EXPECT_TRUE(gate_.Admit(PeerCred{0, 1, 0}, system_clock::time_point::max()).ok());
  if (::geteuid() != 0) {
    absl::StatusOr<Call> other = gate_.Admit(PeerCred{::geteuid() + 1, 1, 0}, system_clock::time_point::max());
    EXPECT_TRUE(absl::IsPermissionDenied(other.status())) << other.status();
  }
  absl::StatusOr<Call> unknown = gate_.Admit(std::nullopt, system_clock::time_point::max());
  EXPECT_TRUE(absl::IsPermissionDenied(unknown.status())) << unknown.status();
}

}  // namespace
}  // namespace smime::agent
