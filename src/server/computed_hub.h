// The committed computed value changes, for stream readers: the counterpart of ChangeHub for
// durable::StoredComputedChange, with its own sequence (docs/api.md, "Computed value changes").
#pragma once

#include "server/hub.h"

namespace shoal::server {

using ComputedHub = RecordHub<durable::StoredComputedChange>;

}  // namespace shoal::server
