#include "shoal/status.h"

namespace shoal {

std::string Status::ToString() const {
  const char* name = "ok";
  switch (code_) {
    case Code::kOk:
      return "ok";
    case Code::kInvalidArgument:
      name = "invalid argument";
      break;
    case Code::kNotFound:
      name = "not found";
      break;
    case Code::kAlreadyExists:
      name = "already exists";
      break;
    case Code::kFailedPrecondition:
      name = "failed precondition";
      break;
    case Code::kInternal:
      name = "internal";
      break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace shoal
