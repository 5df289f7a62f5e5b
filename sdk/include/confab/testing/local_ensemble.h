// LocalEnsemble starts real confabd processes on free loopback ports in temporary directories,
// for Confab's own tests and for users' tests (as Curator's TestingCluster or etcd's embed). It
// stops exactly the processes it started and removes its directories when destroyed.
//
// One member runs standalone; 3 or 5 members form a ZAB ensemble (each confabd gets --id and the
// --peers list on free loopback ports). Start() returns once a leader serves with every member
// following it.
#ifndef CONFAB_TESTING_LOCAL_ENSEMBLE_H_
#define CONFAB_TESTING_LOCAL_ENSEMBLE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace confab::testing {

struct LocalEnsembleOptions {
  int members = 1;  // 1, 3 or 5 (any count from 1 to 9 works)
  // The confabd binary; empty: $CONFABD, else "confabd" on PATH.
  std::string confabd_path;
  // Extra flags for every member, e.g. {"--session-timeout-min-ms=500"}.
  std::vector<std::string> extra_flags;
  // Keep the temporary directories (data and logs) after destruction, for debugging.
  bool keep_dirs = false;
  absl::Duration start_timeout = absl::Seconds(20);
};

class LocalEnsemble {
 public:
  static absl::StatusOr<std::unique_ptr<LocalEnsemble>> Start(LocalEnsembleOptions options);
  ~LocalEnsemble();  // SIGKILLs what still runs, waits for it, removes the directories

  LocalEnsemble(const LocalEnsemble&) = delete;
  LocalEnsemble& operator=(const LocalEnsemble&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:p1,127.0.0.1:p2,...": the connect string clients take.
  std::string ConnectString() const;
  std::string Endpoint(int member) const;
  std::string DataDir(int member) const;
  std::string LogFile(int member) const;  // the member's stderr
  bool IsRunning(int member) const;
  pid_t Pid(int member) const;

  absl::Status Kill(int member);  // SIGKILL and reap
  // SIGTERM; waits (bounded) for a clean exit and returns an error unless it exited with 0.
  absl::Status Stop(int member);
  // Starts a stopped member again on the same data directory and port.
  absl::Status Restart(int member);
  absl::Status Pause(int member);   // SIGSTOP
  absl::Status Resume(int member);  // SIGCONT
  // Deletes a stopped member's data directory (it restarts empty).
  absl::Status Wipe(int member);

  // The index of the member that leads and serves, as the running members report it; NOT_FOUND
  // while there is none (an election is under way).
  absl::StatusOr<int> Leader() const;
  // Waits until a leader serves and every running, unpaused member serves with it; its index.
  absl::StatusOr<int> WaitForLeader(absl::Duration timeout = absl::Seconds(30)) const;
  // What one member's Status call reports: role ("LEADING", "FOLLOWING", "LOOKING",
  // "STANDALONE"), whether it serves, its last applied zxid and tree digest.
  struct MemberState {
    std::string role;
    bool serving = false;
    int64_t last_zxid = 0;
    uint64_t digest = 0;
  };
  absl::StatusOr<MemberState> State(int member) const;

 private:
  struct Member {
    std::string data_dir;
    std::string log_file;
    int port = 0;       // client port (0 until the first start picked one)
    int peer_port = 0;  // its peer service, fixed for the ensemble's life
    pid_t pid = -1;
    bool paused = false;
  };
  explicit LocalEnsemble(LocalEnsembleOptions options) : options_(std::move(options)) {}
  absl::Status Launch(int member);
  absl::Status CheckMember(int member) const;

  LocalEnsembleOptions options_;
  std::string root_;
  std::vector<Member> members_;
};

}  // namespace confab::testing

#endif  // CONFAB_TESTING_LOCAL_ENSEMBLE_H_
