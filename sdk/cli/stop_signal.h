// StopSignal wakes the main thread of a verb that runs until told to stop (watch): on SIGINT or
// SIGTERM once CatchInterrupts() was called, or when Fire() is called from any thread (the work
// is done, the session is lost). It is a self-pipe, since writing to a pipe is what a signal
// handler may safely do, and it is process-wide, as signal dispositions are.
#ifndef CONFAB_SDK_CLI_STOP_SIGNAL_H_
#define CONFAB_SDK_CLI_STOP_SIGNAL_H_

namespace confab::cli {

class StopSignal {
 public:
  static StopSignal& Get();

  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // From now on SIGINT and SIGTERM fire the signal instead of ending the process.
  void CatchInterrupts();
  // Thread-safe and async-signal-safe; firing more than once is harmless.
  void Fire();
  // Blocks until the signal was fired (at once if it already was).
  void Wait();

 private:
  StopSignal();

  int read_fd_ = -1;
  int write_fd_ = -1;
};

}  // namespace confab::cli

#endif  // CONFAB_SDK_CLI_STOP_SIGNAL_H_
