// Stat <-> confab.v1.Stat, for the edges that put node metadata on the wire.
#ifndef CONFAB_SERVER_COMMON_STAT_PROTO_H_
#define CONFAB_SERVER_COMMON_STAT_PROTO_H_

#include "confab/v1/coordination.pb.h"
#include "server/common/types.h"

namespace confab {

void ToProto(const Stat& stat, v1::Stat* out);
Stat FromProto(const v1::Stat& stat);

}  // namespace confab

#endif  // CONFAB_SERVER_COMMON_STAT_PROTO_H_
