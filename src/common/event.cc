#include "shoal/event.h"

namespace shoal {

void Message::Clear() {
  type = MessageType::kTrack;
  user_id.clear();
  anonymous_id.clear();
  event.clear();
  name.clear();
  message_id.clear();
  group_id.clear();
  previous_id.clear();
  timestamp = 0;
  received_at = 0;
  properties.clear();
  traits.clear();
}

}  // namespace shoal
