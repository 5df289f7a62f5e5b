#include "tests/sim/sim_disk.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace confab::sim {
namespace {

Zxid ZxidOf(const internal::LogEntry& entry) { return Zxid::FromInt(entry.zxid()); }

}  // namespace

TreeImage CaptureTree(tree::DataTree& tree) {
  TreeImage image;
  tree::SnapshotCursor cursor = tree.BeginSnapshot();
  image.zxid = cursor.zxid();
  image.digest = cursor.digest();
  image.sessions = cursor.sessions();
  image.nodes.reserve(cursor.node_count());
  tree.NextSnapshotChunk(
      &cursor, std::numeric_limits<size_t>::max(),
      [&image](absl::string_view path, const Stat& stat, absl::string_view data) {
        image.nodes.push_back({std::string(path), stat, std::string(data)});
      });
  tree.EndSnapshot();
  return image;
}

absl::StatusOr<std::unique_ptr<tree::DataTree>> LoadTree(const TreeImage& image) {
  auto loaded = std::make_unique<tree::DataTree>();
  for (const TreeImage::Node& node : image.nodes) {
    if (absl::Status status = loaded->LoadNode(node.path, node.stat, node.data); !status.ok()) {
      return status;
    }
  }
  for (const tree::SessionInfo& session : image.sessions) {
    if (absl::Status status = loaded->LoadSession(session); !status.ok()) return status;
  }
  if (absl::Status status = loaded->FinishLoad(image.zxid, image.digest); !status.ok()) {
    return status;
  }
  return loaded;
}

Zxid SimDisk::LastZxid() const {
  return entries_.empty() ? SnapshotZxid() : ZxidOf(entries_.back());
}

Zxid SimDisk::SnapshotZxid() const { return snapshot_ ? snapshot_->zxid : Zxid(); }

bool SimDisk::Contains(Zxid zxid) const {
  if (zxid == SnapshotZxid()) return true;
  const size_t index = LowerBound(zxid);
  return index < entries_.size() && ZxidOf(entries_[index]) == zxid;
}

Zxid SimDisk::LastAtOrBefore(Zxid zxid) const {
  const size_t index = LowerBound(zxid);
  if (index < entries_.size() && ZxidOf(entries_[index]) == zxid) return zxid;
  if (index > 0) return ZxidOf(entries_[index - 1]);
  return SnapshotZxid() <= zxid ? SnapshotZxid() : Zxid();
}

std::vector<internal::LogEntry> SimDisk::EntriesAfter(Zxid after, size_t max_entries) const {
  std::vector<internal::LogEntry> out;
  for (size_t i = LowerBound(after.Next()); i < entries_.size() && out.size() < max_entries; ++i) {
    out.push_back(entries_[i]);
  }
  return out;
}

absl::Status SimDisk::Append(const internal::LogEntry& entry) {
  const Zxid last = LastZxid();
  const Zxid zxid = ZxidOf(entry);
  const bool contiguous = zxid.epoch() == last.epoch()
                              ? zxid.counter() == last.counter() + 1
                              : zxid.epoch() > last.epoch() && zxid.counter() == 1;
  if (!contiguous) {
    return absl::InternalError(absl::StrCat("log append of ", zxid.ToString(), " after ",
                                            last.ToString(), " leaves a gap"));
  }
  entries_.push_back(entry);
  write_numbers_.push_back(++writes_);
  return absl::OkStatus();
}

absl::Status SimDisk::TruncateAfter(Zxid zxid) {
  if (zxid < SnapshotZxid()) {
    return absl::InternalError(absl::StrCat("truncate after ", zxid.ToString(),
                                            " below the snapshot ", SnapshotZxid().ToString()));
  }
  const size_t keep = LowerBound(zxid.Next());
  entries_.resize(keep);
  write_numbers_.resize(keep);
  synced_ = std::min(synced_, keep);
  return absl::OkStatus();
}

Zxid SimDisk::CompleteSync(uint64_t sync) {
  while (synced_ < entries_.size() && write_numbers_[synced_] <= sync) ++synced_;
  return DurableZxid();
}

Zxid SimDisk::DurableZxid() const {
  return synced_ == 0 ? SnapshotZxid() : ZxidOf(entries_[synced_ - 1]);
}

absl::Status SimDisk::TakeSnapshot(std::shared_ptr<const TreeImage> image) {
  if (image->zxid <= SnapshotZxid()) return absl::OkStatus();
  if (image->zxid > DurableZxid() || !Contains(image->zxid)) {
    return absl::InternalError(absl::StrCat("snapshot at ", image->zxid.ToString(),
                                            " is not a durable entry of the log (durable through ",
                                            DurableZxid().ToString(), ")"));
  }
  const size_t compacted = LowerBound(image->zxid.Next());
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(compacted));
  write_numbers_.erase(write_numbers_.begin(),
                       write_numbers_.begin() + static_cast<std::ptrdiff_t>(compacted));
  synced_ -= compacted;
  snapshot_ = std::move(image);
  return absl::OkStatus();
}

void SimDisk::InstallSnapshot(std::shared_ptr<const TreeImage> image) {
  snapshot_ = std::move(image);
  entries_.clear();
  write_numbers_.clear();
  synced_ = 0;
}

SimDisk::CrashLoss SimDisk::Crash(std::mt19937_64& rng) {
  CrashLoss loss;
  const size_t unsynced = entries_.size() - synced_;
  loss.survived = static_cast<size_t>(rng() % (unsynced + 1));
  loss.lost = unsynced - loss.survived;
  loss.torn = loss.lost > 0 && rng() % 2 == 0;
  entries_.resize(synced_ + loss.survived);
  write_numbers_.resize(entries_.size());
  synced_ = entries_.size();
  return loss;
}

size_t SimDisk::LowerBound(Zxid zxid) const {
  return static_cast<size_t>(
      std::lower_bound(entries_.begin(), entries_.end(), zxid,
                       [](const internal::LogEntry& e, Zxid z) { return ZxidOf(e) < z; }) -
      entries_.begin());
}

}  // namespace confab::sim
