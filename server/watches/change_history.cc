#include "server/watches/change_history.h"

#include <algorithm>

#include "server/common/check.h"
#include "server/watches/watch_registry.h"

namespace confab::watches {

void ChangeHistory::Record(Zxid zxid, const tree::WatchTrigger& trigger) {
  if (size_ > 0) {
    const Zxid last = blocks_.back().changes.back().zxid;
    CONFAB_CHECK(last <= zxid, "change at zxid ", zxid.ToString(), " recorded after ",
                 last.ToString());
  }
  if (capacity_ == 0) {
    covered_after_ = zxid;
    return;
  }
  if (size_ == capacity_) {
    // Forgetting part of a zxid's changes makes that whole zxid unknown.
    covered_after_ = blocks_.front().changes[first_].zxid;
    --size_;
    if (++first_ == blocks_.front().changes.size()) {
      blocks_.pop_front();
      first_ = 0;
    }
  }
  CONFAB_CHECK(trigger.path.size() <= kBlockPathBytesMax, "path of ", trigger.path.size(),
               " bytes recorded at zxid ", zxid.ToString());
  if (blocks_.empty() || blocks_.back().changes.size() == kBlockChanges ||
      blocks_.back().paths.size() + trigger.path.size() > kBlockPathBytesMax) {
    blocks_.emplace_back().changes.reserve(std::min(capacity_, kBlockChanges));
  }
  Block& block = blocks_.back();
  block.paths += trigger.path;
  block.changes.push_back(Change{zxid, static_cast<uint32_t>(block.paths.size()), trigger.type});
  ++size_;
}

bool ChangeHistory::Since(Zxid start, absl::string_view path, v1::WatchKind kind,
                          std::vector<v1::WatchEvent>* out) const {
  const bool one_shot = kind == v1::DATA_WATCH || kind == v1::CHILD_WATCH;
  // Changes are in zxid order: skip to the first block, then the first change, after `start`.
  auto block = std::upper_bound(
      blocks_.begin(), blocks_.end(), start,
      [](Zxid z, const Block& candidate) { return z < candidate.changes.back().zxid; });
  for (; block != blocks_.end(); ++block) {
    const auto forgotten =
        block->changes.begin() + static_cast<ptrdiff_t>(block == blocks_.begin() ? first_ : 0);
    auto first = std::upper_bound(forgotten, block->changes.end(), start,
                                  [](Zxid z, const Change& change) { return z < change.zxid; });
    for (auto it = first; it != block->changes.end(); ++it) {
      const absl::string_view changed =
          block->PathOf(static_cast<size_t>(it - block->changes.begin()));
      if (!Matches(kind, path, it->type, changed)) continue;
      v1::WatchEvent& event = out->emplace_back();
      event.set_type(it->type);
      event.set_path(std::string(changed));
      event.set_zxid(it->zxid.ToInt());
      if (one_shot) return start >= covered_after_;
    }
  }
  return start >= covered_after_;
}

}  // namespace confab::watches
