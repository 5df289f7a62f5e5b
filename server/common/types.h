// Small strong types for protocol numbers, shared by every server module. They exist so that a
// zxid, a session id and a count can never be passed in each other's place.
#ifndef CONFAB_SERVER_COMMON_TYPES_H_
#define CONFAB_SERVER_COMMON_TYPES_H_

#include <compare>
#include <cstdint>
#include <string>
#include <utility>

namespace confab {

using Epoch = uint32_t;

// A transaction id: (epoch << 32) | counter, as ZooKeeper. Totally ordered; counter 0 of an
// epoch is never a transaction (it names "the start of the epoch").
class Zxid {
 public:
  constexpr Zxid() = default;
  constexpr Zxid(Epoch epoch, uint32_t counter)
      : value_((static_cast<uint64_t>(epoch) << 32) | counter) {}
  static constexpr Zxid FromInt(int64_t v) { return Zxid(static_cast<uint64_t>(v)); }

  constexpr int64_t ToInt() const { return static_cast<int64_t>(value_); }
  constexpr Epoch epoch() const { return static_cast<Epoch>(value_ >> 32); }
  constexpr uint32_t counter() const { return static_cast<uint32_t>(value_); }
  constexpr bool IsZero() const { return value_ == 0; }
  // The zxid that follows this one in the same epoch.
  constexpr Zxid Next() const { return Zxid(value_ + 1); }

  constexpr auto operator<=>(const Zxid&) const = default;
  std::string ToString() const;  // "0x<epoch>:<counter>" for humans, e.g. in error messages

 private:
  constexpr explicit Zxid(uint64_t v) : value_(v) {}
  uint64_t value_ = 0;
};

// A client session id; 0 means "no session".
class SessionId {
 public:
  constexpr SessionId() = default;
  constexpr explicit SessionId(int64_t v) : value_(v) {}
  constexpr int64_t value() const { return value_; }
  constexpr bool IsNone() const { return value_ == 0; }
  constexpr auto operator<=>(const SessionId&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, SessionId s) {
    return H::combine(std::move(h), s.value_);
  }
  std::string ToString() const;  // hex, as ZooKeeper prints session ids

 private:
  int64_t value_ = 0;
};

// An ensemble member's id, as in `--id N` and `--peers N=host:port,...`; 0 means "none".
class MemberId {
 public:
  constexpr MemberId() = default;
  constexpr explicit MemberId(uint32_t v) : value_(v) {}
  constexpr uint32_t value() const { return value_; }
  constexpr bool IsNone() const { return value_ == 0; }
  constexpr auto operator<=>(const MemberId&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, MemberId m) {
    return H::combine(std::move(h), m.value_);
  }

 private:
  uint32_t value_ = 0;
};

// Node metadata, as ZooKeeper's Stat. Times are ms since the Unix epoch.
struct Stat {
  int64_t czxid = 0;
  int64_t mzxid = 0;
  int64_t pzxid = 0;
  int64_t ctime = 0;
  int64_t mtime = 0;
  int32_t version = 0;
  int32_t cversion = 0;
  int64_t ephemeral_owner = 0;
  int32_t data_length = 0;
  int32_t num_children = 0;
  bool operator==(const Stat&) const = default;
};

}  // namespace confab

#endif  // CONFAB_SERVER_COMMON_TYPES_H_
