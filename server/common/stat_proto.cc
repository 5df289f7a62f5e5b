#include "server/common/stat_proto.h"

namespace confab {

void ToProto(const Stat& stat, v1::Stat* out) {
  out->set_czxid(stat.czxid);
  out->set_mzxid(stat.mzxid);
  out->set_pzxid(stat.pzxid);
  out->set_ctime(stat.ctime);
  out->set_mtime(stat.mtime);
  out->set_version(stat.version);
  out->set_cversion(stat.cversion);
  out->set_ephemeral_owner(stat.ephemeral_owner);
  out->set_data_length(stat.data_length);
  out->set_num_children(stat.num_children);
}

Stat FromProto(const v1::Stat& stat) {
  return Stat{stat.czxid(),       stat.mzxid(),       stat.pzxid(),    stat.ctime(),
              stat.mtime(),       stat.version(),     stat.cversion(), stat.ephemeral_owner(),
              stat.data_length(), stat.num_children()};
}

}  // namespace confab
