// Small text primitives shared by the stages that read and write strings (the language lexer, the
// readers of list values, JSON written by the decoder and the API).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shoal {

// Appends the UTF-8 encoding of code point `cp` (<= 0x10FFFF) to *out.
void AppendUtf8(uint32_t cp, std::string* out);

// Appends `s` as a JSON string literal: quotes, and escapes for '"', '\\' and control bytes.
// Bytes >= 0x80 are copied as they are (the input is UTF-8).
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace shoal
