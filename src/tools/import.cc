// `shoal import FILE... --data-dir DIR`: loads history into a data directory before going live
// (the server must not be running on it: RocksDB locks the directory). NDJSON files hold one
// Segment-spec call per line; CSV files hold one call per row with a header naming the columns.
// Calls go through the same path as HTTP ingest (decode, deduplicate, engine, durable commit), so
// a later `shoal serve` on the directory starts with them.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "ingest/decode.h"
#include "server/service.h"
#include "tools/commands.h"

namespace shoal::tools {
namespace {

struct ImportArgs {
  std::vector<std::string> files;
  std::string data_dir = "shoal-data";
  std::string format = "auto";  // auto, ndjson, csv
  std::string csv_type = "track";
  bool progress = true;
  size_t max_errors = 100;
};

// Splits one CSV row (RFC 4180: quotes, "" inside quotes). Returns false on an unterminated
// quote, with *col the 1-based column where that field starts.
bool SplitCsv(std::string_view line, std::vector<std::string>* out, size_t* col) {
  out->clear();
  size_t i = 0;
  while (true) {
    std::string field;
    *col = i + 1;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field.push_back('"');
            i += 2;
          } else {
            ++i;
            closed = true;
            break;
          }
        } else {
          field.push_back(line[i++]);
        }
      }
      if (!closed) return false;
      while (i < line.size() && line[i] != ',') ++i;
    } else {
      size_t j = line.find(',', i);
      if (j == std::string_view::npos) j = line.size();
      field.assign(line.substr(i, j - i));
      i = j;
    }
    out->push_back(std::move(field));
    if (i >= line.size()) return true;
    ++i;  // the comma
  }
}

// A CSV cell as a typed value: numbers, true/false, else a string.
Value CellValue(const std::string& s) {
  if (s == "true") return Value::Bool(true);
  if (s == "false") return Value::Bool(false);
  if (!s.empty()) {
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (end == s.c_str() + s.size() && s.find_first_of("xXpP") == std::string::npos &&
        std::isfinite(d)) {
      return Value::Number(d);
    }
  }
  return Value::String(s);
}

class Progress {
 public:
  Progress(uint64_t total_bytes, bool enabled)
      : total_(total_bytes),
        enabled_(enabled),
        tty_(isatty(STDERR_FILENO)),
        start_(std::chrono::steady_clock::now()),
        last_(start_) {}
  void Update(uint64_t bytes, uint64_t lines, bool final = false) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(tty_ ? 200 : 5000)) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double frac = total_ ? static_cast<double>(bytes) / static_cast<double>(total_) : 1;
    int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
    fmt::print(stderr, "{}[{}] {:5.1f}%  {} lines  {:.0f} lines/s{}", tty_ ? "\r" : "", bar,
               frac * 100, lines, secs > 0 ? static_cast<double>(lines) / secs : 0,
               tty_ && !final ? "" : "\n");
  }

 private:
  uint64_t total_;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

int RunImport(const ImportArgs& a) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
  uint64_t total_bytes = 0;
  for (const auto& f : a.files) {
    std::error_code ec;
    uint64_t n = std::filesystem::file_size(f, ec);
    if (ec) {
      fmt::print(stderr, "{}: {}\n", f, ec.message());
      return 2;
    }
    total_bytes += n;
  }
  server::ServiceOptions so;
  so.data_dir = a.data_dir;
  server::Service svc(so);
  if (Status st = svc.Start(); !st.ok()) {
    fmt::print(stderr, "opening {}: {}\n", a.data_dir, st.ToString());
    return 1;
  }

  // Up to 4 groups in flight: the engine works on one while the previous one commits.
  std::deque<std::future<server::IngestOutcome>> inflight;
  uint64_t accepted = 0, duplicates = 0, errors = 0, lines = 0, bytes = 0;
  Status failure;
  auto drain = [&](size_t keep) {
    while (inflight.size() > keep) {
      server::IngestOutcome o = inflight.front().get();
      inflight.pop_front();
      if (!o.status.ok() && failure.ok()) failure = o.status;
      accepted += o.accepted;
      duplicates += o.duplicates;
    }
  };
  std::vector<Message> msgs;
  auto submit = [&] {
    if (msgs.empty()) return;
    auto p = std::make_shared<std::promise<server::IngestOutcome>>();
    inflight.push_back(p->get_future());
    while (!svc.Ingest(std::move(msgs), [p](server::IngestOutcome o) { p->set_value(o); })) {
      drain(0);
    }
    msgs.clear();
    drain(3);
  };
  auto report = [&](const std::string& file, uint64_t line_no, const std::string& what) {
    if (++errors <= a.max_errors) fmt::print(stderr, "{}:{}: {}\n", file, line_no, what);
  };

  Progress progress(total_bytes, a.progress);
  ingest::Decoder decoder;
  for (const std::string& file : a.files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      fmt::print(stderr, "{}: cannot open\n", file);
      return 2;
    }
    bool csv = a.format == "csv" || (a.format == "auto" && file.ends_with(".csv"));
    std::vector<std::string> header, cells;
    std::string line;
    uint64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line_no == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // a UTF-8 BOM
      ++lines;
      bytes += line.size() + 1;
      progress.Update(bytes, lines);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      Millis now = RealClock().Now();
      if (!csv) {
        ingest::DecodeOptions opts;
        opts.received_at = now;
        opts.now = now;
        Status st = decoder.Decode(line, opts, &msgs.emplace_back());
        if (!st.ok()) {
          msgs.pop_back();
          report(file, line_no, st.message());
          continue;
        }
      } else {
        size_t col = 0;
        if (!SplitCsv(line, &cells, &col)) {
          report(file, line_no, fmt::format("column {}: unterminated quote", col));
          continue;
        }
        if (header.empty()) {
          header = cells;
          continue;
        }
        Message& m = msgs.emplace_back();
        m.Clear();
        std::string type = a.csv_type;
        bool bad = false;
        for (size_t i = 0; i < cells.size() && i < header.size() && !bad; ++i) {
          const std::string& h = header[i];
          const std::string& v = cells[i];
          if (h == "type") {
            if (!v.empty()) type = v;
          } else if (h == "userId" || h == "user_id") {
            m.user_id = v;
          } else if (h == "anonymousId" || h == "anonymous_id") {
            m.anonymous_id = v;
          } else if (h == "event") {
            m.event = v;
          } else if (h == "messageId" || h == "message_id") {
            m.message_id = v;
          } else if (h == "timestamp") {
            std::optional<Millis> t = ParseTime(v);
            if (!t) {
              report(file, line_no, fmt::format("column 'timestamp': not an ISO 8601 time: {}", v));
              bad = true;
            } else {
              m.timestamp = *t;
            }
          } else if (!v.empty()) {
            m.properties.push_back({h, CellValue(v)});
          }
        }
        if (!bad && type == "identify") {
          m.type = MessageType::kIdentify;
          m.traits = std::move(m.properties);
          m.properties.clear();
        } else if (!bad && type == "track") {
          m.type = MessageType::kTrack;
          if (m.event.empty()) {
            report(file, line_no, "column 'event': required for a track row");
            bad = true;
          }
        } else if (!bad) {
          report(file, line_no, fmt::format("column 'type': identify or track, not {}", type));
          bad = true;
        }
        if (!bad && m.ProfileKey().empty()) {
          report(file, line_no, "column 'userId': required");
          bad = true;
        }
        if (!bad && m.timestamp == 0) m.timestamp = now;
        m.received_at = now;
        if (bad) {
          msgs.pop_back();
          continue;
        }
      }
      if (msgs.size() >= 5000) submit();
      if (!failure.ok()) break;
    }
  }
  submit();
  drain(0);
  progress.Update(bytes, lines, true);
  svc.Stop();
  if (!failure.ok()) {
    fmt::print(stderr, "import failed: {}\n", failure.ToString());
    return 1;
  }
  fmt::print("imported {} calls ({} duplicates skipped, {} lines rejected) into {}\n", accepted,
             duplicates, errors, a.data_dir);
  return errors > 0 ? 3 : 0;
}

}  // namespace

void AddImportCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "import",
      "Load history (NDJSON Segment-spec calls, or CSV with a header row) into a data directory; "
      "the server must not be running on it");
  auto a = std::make_shared<ImportArgs>();
  cmd->add_option("FILE", a->files, "files to load, in order")->required();
  cmd->add_option("--data-dir", a->data_dir, "the server's data directory")
      ->envname("SHOAL_DATA_DIR")
      ->capture_default_str();
  cmd->add_option("--format", a->format, "auto (by extension: .csv is CSV), ndjson or csv")
      ->check(CLI::IsMember({"auto", "ndjson", "csv"}))
      ->capture_default_str();
  cmd->add_option("--csv-type", a->csv_type,
                  "the call type of CSV rows without a 'type' column: track (columns userId, "
                  "event, timestamp, messageId, then properties) or identify (userId, timestamp, "
                  "then traits)")
      ->check(CLI::IsMember({"track", "identify"}))
      ->capture_default_str();
  cmd->add_flag("!--no-progress", a->progress, "do not draw the progress bar");
  cmd->add_option("--max-errors", a->max_errors, "print at most this many rejected lines")
      ->capture_default_str();
  cmd->callback([a] {
    int rc = RunImport(*a);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace shoal::tools
