#include "server/watches/change_history.h"

#include <algorithm>

#include "server/common/check.h"
#include "server/watches/watch_registry.h"

namespace confab::watches {

void ChangeHistory::Record(Zxid zxid, const tree::WatchTrigger& trigger) {
  CONFAB_CHECK(changes_.empty() || changes_.back().zxid <= zxid, "change at zxid ", zxid.ToString(),
               " recorded after ", changes_.back().zxid.ToString());
  if (capacity_ == 0) {
    covered_after_ = zxid;
    return;
  }
  if (changes_.size() == capacity_) {
    // Forgetting part of a zxid's changes makes that whole zxid unknown.
    covered_after_ = changes_.front().zxid;
    changes_.pop_front();
  }
  changes_.push_back(Change{zxid, trigger});
}

bool ChangeHistory::Since(Zxid start, absl::string_view path, v1::WatchKind kind,
                          std::vector<v1::WatchEvent>* out) const {
  const bool one_shot = kind == v1::DATA_WATCH || kind == v1::CHILD_WATCH;
  // Changes are in zxid order: skip to the first one after `start`.
  auto first = std::upper_bound(changes_.begin(), changes_.end(), start,
                                [](Zxid z, const Change& change) { return z < change.zxid; });
  for (auto it = first; it != changes_.end(); ++it) {
    if (!Matches(kind, path, it->trigger)) continue;
    v1::WatchEvent& event = out->emplace_back();
    event.set_type(it->trigger.type);
    event.set_path(it->trigger.path);
    event.set_zxid(it->zxid.ToInt());
    if (one_shot) break;
  }
  return start >= covered_after_;
}

}  // namespace confab::watches
