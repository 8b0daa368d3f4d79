// Small text primitives shared by the stages that read strings (the language lexer, the readers
// of list values).
#pragma once

#include <cstdint>
#include <string>

namespace shoal {

// Appends the UTF-8 encoding of code point `cp` (<= 0x10FFFF) to *out.
void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace shoal
