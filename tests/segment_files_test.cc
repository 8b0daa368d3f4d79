// The data-driven segment tests: every file under tests/segments/**/*.test is one GoogleTest case,
// named after its path with '/' as '_' and without ".test" (tests/segments/window/purchase_30d.test
// is SegmentFiles.window_purchase_30d; run it alone with --gtest_filter='*window_purchase_30d*').
//
// The format (tests/segments/README.md has the long version). A file is a list of steps; a step
// starts with a command line, and some commands take a block of lines after it. Blocks end at a
// blank line (or the end of the file); "----" separates a block's input from its expected output.
// Lines starting with '#' between steps are comments; on a command line, " #" starts a comment.
//
//   clock 2026-01-01T00:00:00Z   set the virtual clock (never backwards), then AdvanceTime().
//                                Before the first `clock`, the clock is 2026-01-01T00:00:00Z.
//   advance 30d 1ms              move the clock forward by the sum, then AdvanceTime()
//   segment ok NAME              CreateSegment; the definition is the block (may span lines)
//   segment error NAME           definition block, "----", lines that must each be a substring
//                                of the error (Status::ToString()); none: any error
//   update ok|error NAME         UpdateSegment, as `segment`
//   delete ok NAME               DeleteSegment
//   delete error NAME            optionally followed by "----" and expected substrings
//   event ok                     one Segment-spec JSON message per line (IngestJson), each must
//                                succeed
//   event error                  one message (the block up to "----"), then expected substrings
//   members NAME                 "----", then the expected member keys, one per line (any order)
//   count NAME N                 Count(NAME) == N
//   segments PROFILE             "----", then the segments the profile is in (SegmentsOf)
//   changes NAME                 "----", then the changes of NAME emitted since the previous
//                                `changes NAME` (or since the start), one per line, in order per
//                                profile (profiles may interleave in any order):
//                                "+ u1 event" / "- u1 time": kind, profile, CauseName; an
//                                optional 4th field must equal cause_ref (e.g. "+ u1 segment vip").
//                                An empty block means: no changes.
//   explain NAME PROFILE         "----", then lines that must each be a substring of the rendered
//                                explain tree. Each node renders as one line: two spaces per
//                                depth, then "true " or "false ", then its canonical text, then
//                                "  [detail]" when the detail is not empty.
//   print                        definition block, "----", the expected canonical text; also
//                                checks that the canonical text re-parses to the same tree
//   print error                  definition block, "----", expected substrings of the parse error
//   erase [ok|error] PROFILE     EraseProfile (ok when omitted); error: optionally "----" and
//                                expected substrings
//   profile PROFILE exists|missing  HasProfile; "missing" also checks that Traits() and Explain()
//                                are kNotFound and that SegmentsOf() is empty
//   traits PROFILE               "----", then the expected traits as "path = JSON value" lines in
//                                path order (an empty block: none), or the one line "not found"
//   stats                        "----", then lines "profiles = N", "records = N",
//                                "timer_fires = N" (Stats())
//   list create [ok|error] NAME  CreateList (ok when omitted)
//   list delete ok|error NAME    DeleteList; error: optionally "----" and expected substrings
//   list add NAME KEY...         AddToList, must succeed
//   list remove NAME KEY...      RemoveFromList, must succeed
//   list members NAME            "----", then the expected keys (ListMembers), any order
//   lists                        "----", then the expected list names (Lists())
//   account-segment ok|error NAME  CreateSegment(..., SegmentTarget::kAccounts), as `segment`;
//                                members/count/changes/explain/update/delete take its name, with
//                                account keys (groupIds) in place of profile keys
//   account-segments ACCOUNT     "----", then the account segments the account is in
//   account ACCOUNT              "----", then the account's traits as for `traits` ("not found")
//   account-users ACCOUNT        "----", then the account's members ("not found")
//   accounts PROFILE             "----", then the user's accounts
//   computed ok|error NAME       CreateComputedTrait, as `segment` (docs/language.md, "Computed
//                                traits and scores")
//   computed-update ok|error NAME  UpdateComputedTrait, as `update`
//   computed-delete ok|error NAME  DeleteComputedTrait, as `delete`
//   values NAME                  "----", then "PROFILE = JSON" for every known profile in key order
//                                (JSON as for `traits`; null: no value)
//   computed-traits PROFILE      "----", then "NAME = JSON" lines (ComputedTraits), or "not found"
//   computed-changes NAME        "----", then the value changes since the previous
//                                `computed-changes NAME`: "PROFILE OLD -> NEW CAUSE [CAUSE_REF]",
//                                in order per profile
//   computed-print [error]       as `print`, for a computed trait definition
//   account-computed ok|error NAME  CreateComputedTrait(..., SegmentTarget::kAccounts), as
//                                `computed`; computed-update/-delete/-changes take its name, with
//                                account keys (groupIds) in place of profile keys
//   account-values NAME          "----", then "ACCOUNT = JSON" for every known account in key order
//   account-computed-traits ACCOUNT  "----", then "NAME = JSON" lines (AccountComputedTraits), or
//                                "not found"
//
// After EVERY step the runner checks, for every live segment: Members() equals
// reference::Members() over engine.store() at engine.Now(); the definition's canonical text
// re-parses to an equal Expr and is what GetSegment() reports; Count/size agree; and the
// segment's change stream replays (enter/exit on an empty set) to its members with seq 1, 2, 3...
// The runner also keeps its own model of the lists' keys and of the known profiles (a profile is
// known from its first accepted message until it is erased; erasing takes it out of every list):
// the reference evaluator reads `in list` from that model, Lists()/ListMembers() must equal it,
// Stats().profiles must count it, and SegmentsOf() must agree with Members().
// A failure names the file:line of the step. An invariant failure stops the file (later steps
// would only repeat it); a failed expectation does not.
#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ingest/decode.h"
#include "invariants.h"
#include "rules/parser.h"
#include "shoal/engine.h"
#include "shoal/time.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;
using testing_util::CheckAll;
using testing_util::JoinKeys;

constexpr Millis kDefaultStart = 1767225600000;  // 2026-01-01T00:00:00Z

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// A trait value as JSON text, for `traits`.
std::string ValueText(const Value& v) {
  switch (v.type) {
    case ValueType::kNull:
      return "null";
    case ValueType::kBool:
      return v.b ? "true" : "false";
    case ValueType::kNumber: {
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, v.num);  // shortest round-trip form
      return std::string(buf, r.ptr);
    }
    case ValueType::kString: {
      std::string out = "\"";
      for (char c : v.str) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(c);
      }
      return out + "\"";
    }
    case ValueType::kList:
      return v.str;
  }
  return "?";
}

void Render(const ExplainNode& n, int depth, std::string* out) {
  out->append(2 * depth, ' ');
  out->append(n.value ? "true " : "false ");
  out->append(n.text);
  if (!n.detail.empty()) out->append("  [" + n.detail + "]");
  out->push_back('\n');
  for (const auto& c : n.children) Render(c, depth + 1, out);
}

class FileRunner {
 public:
  FileRunner(std::string path, std::string display)
      : path_(std::move(path)),
        display_(std::move(display)),
        clock_(kDefaultStart),
        engine_(std::make_unique<Engine>(&clock_)) {}

  void Run() {
    std::ifstream in(path_);
    if (!in) {
      ADD_FAILURE() << "cannot open " << path_;
      return;
    }
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines_.push_back(line);
    }
    while (pos_ < lines_.size()) {
      std::string raw = Trim(lines_[pos_]);
      if (raw.empty() || raw[0] == '#') {
        ++pos_;
        continue;
      }
      size_t hash = raw.find(" #");
      if (hash != std::string::npos) raw = Trim(raw.substr(0, hash));
      step_line_ = static_cast<int>(pos_) + 1;
      ++pos_;
      Step(Words(raw));
      std::string bad = CheckAll(*engine_, born_, &model_);
      if (!bad.empty()) {
        Fail() << "invariant violated after this step (clock " << FormatTime(clock_.Now()) << "):\n"
               << bad;
        return;
      }
    }
  }

 private:
  // Failure attributed to the current step's line in the .test file.
  struct Reporter {
    std::string file;
    int line;
    std::ostringstream msg;
    ~Reporter() {
      GTEST_MESSAGE_AT_(file.c_str(), line, msg.str().c_str(),
                        ::testing::TestPartResult::kNonFatalFailure);
    }
    template <typename T>
    Reporter& operator<<(const T& v) {
      msg << v;
      return *this;
    }
  };
  Reporter Fail() { return Reporter{path_, step_line_, {}}; }

  // Lines up to a blank line / EOF, or up to "----" when `stop_at_sep`. Consumes the terminator.
  // *sep tells whether "----" ended it.
  std::vector<std::string> Block(bool stop_at_sep, bool* sep = nullptr) {
    std::vector<std::string> out;
    if (sep) *sep = false;
    while (pos_ < lines_.size()) {
      const std::string& l = lines_[pos_];
      if (Trim(l).empty()) {
        ++pos_;
        break;
      }
      if (stop_at_sep && Trim(l) == "----") {
        ++pos_;
        if (sep) *sep = true;
        break;
      }
      out.push_back(l);
      ++pos_;
    }
    return out;
  }
  // Expects the next line to be "----" and returns the block after it.
  std::vector<std::string> Expected() {
    if (pos_ < lines_.size() && Trim(lines_[pos_]) == "----") {
      ++pos_;
      std::vector<std::string> out = Block(false);
      for (auto& l : out) l = Trim(l);
      return out;
    }
    Fail() << "expected a '----' line after this command";
    return {};
  }

  void ExpectErrorContains(const Status& st, const std::vector<std::string>& subs,
                           const std::string& what) {
    if (st.ok()) {
      Fail() << what << " succeeded; expected an error containing '" << Join(subs, "' and '")
             << "'";
      return;
    }
    std::string text = st.ToString();
    for (const auto& s : subs)
      if (text.find(s) == std::string::npos)
        Fail() << what << ": error '" << text << "' does not contain '" << s << "'";
  }

  void SetClock(Millis t) {
    if (t < clock_.Now()) {
      Fail() << "the clock may not go backwards: " << FormatTime(t) << " < "
             << FormatTime(clock_.Now());
      return;
    }
    clock_.Set(t);
    engine_->AdvanceTime();
  }

  void Step(const std::vector<std::string>& w) {
    if (ComputedStep(w)) return;
    const std::string& cmd = w[0];
    auto need = [&](size_t n) {
      if (w.size() < n) {
        Fail() << "'" << cmd << "' needs " << n - 1 << " argument(s)";
        return false;
      }
      return true;
    };
    if (cmd == "clock") {
      if (!need(2)) return;
      std::optional<Millis> t = ParseTime(w[1]);
      if (!t) return (void)(Fail() << "bad time '" << w[1] << "'");
      SetClock(*t);
    } else if (cmd == "advance") {
      if (!need(2)) return;
      Millis d = 0;
      for (size_t i = 1; i < w.size(); ++i) {
        std::optional<Millis> x = ParseDuration(w[i]);
        if (!x) return (void)(Fail() << "bad duration '" << w[i] << "'");
        d += *x;
      }
      SetClock(clock_.Now() + d);
    } else if (cmd == "segment" || cmd == "update" || cmd == "account-segment") {
      if (!need(3)) return;
      bool ok = w[1] == "ok";
      bool sep = false;
      std::string def = Join(Block(!ok, &sep), "\n");
      std::vector<std::string> subs;
      if (!ok) {
        if (!sep) return (void)(Fail() << "'" << cmd << " error' needs ----");
        subs = Block(false);
        for (auto& s : subs) s = Trim(s);
      }
      size_t before = engine_->Changes().size();
      Status st;
      if (cmd == "segment") {
        Result<SegmentInfo> r = engine_->CreateSegment(w[2], def);
        st = r.status();
      } else if (cmd == "account-segment") {
        Result<SegmentInfo> r = engine_->CreateSegment(w[2], def, SegmentTarget::kAccounts);
        st = r.status();
      } else {
        Result<SegmentInfo> r = engine_->UpdateSegment(w[2], def);
        st = r.status();
      }
      if (ok) {
        if (!st.ok())
          Fail() << cmd << " " << w[2] << " failed: " << st.ToString();
        else if (cmd != "update")
          born_[w[2]] = before;
      } else {
        ExpectErrorContains(st, subs, cmd + " " + w[2]);
      }
    } else if (cmd == "delete") {
      if (!need(3)) return;
      Status st = engine_->DeleteSegment(w[2]);
      if (w[1] == "ok") {
        if (!st.ok())
          Fail() << "delete " << w[2] << " failed: " << st.ToString();
        else
          born_.erase(w[2]);
      } else {
        std::vector<std::string> subs;
        if (pos_ < lines_.size() && Trim(lines_[pos_]) == "----") subs = Expected();
        ExpectErrorContains(st, subs, "delete " + w[2]);
      }
    } else if (cmd == "event") {
      if (!need(2)) return;
      if (w[1] == "ok") {
        for (const auto& msg : Block(false)) {
          Status st = engine_->IngestJson(msg);
          if (!st.ok()) Fail() << "IngestJson failed: " << st.ToString() << "\n  " << msg;
          NoteProfile(msg);
        }
      } else {
        bool sep = false;
        std::string msg = Join(Block(true, &sep), "\n");
        std::vector<std::string> subs;
        if (sep) {
          subs = Block(false);
          for (auto& s : subs) s = Trim(s);
        }
        ExpectErrorContains(engine_->IngestJson(msg), subs, "event");
      }
    } else if (cmd == "members") {
      if (!need(2)) return;
      std::vector<std::string> want = Expected();
      std::sort(want.begin(), want.end());
      Result<std::vector<std::string>> got = engine_->Members(w[1]);
      if (!got.ok())
        return (void)(Fail() << "Members(" << w[1] << "): " << got.status().ToString());
      if (*got != want)
        Fail() << "members " << w[1] << " at " << FormatTime(clock_.Now()) << ": got "
               << JoinKeys(*got) << ", expected " << JoinKeys(want);
    } else if (cmd == "count") {
      if (!need(3)) return;
      Result<uint64_t> got = engine_->Count(w[1]);
      if (!got.ok()) return (void)(Fail() << "Count(" << w[1] << "): " << got.status().ToString());
      if (std::to_string(*got) != w[2])
        Fail() << "count " << w[1] << ": got " << *got << ", expected " << w[2];
    } else if (cmd == "segments") {
      if (!need(2)) return;
      std::vector<std::string> want = Expected();
      std::sort(want.begin(), want.end());
      std::vector<std::string> got = engine_->SegmentsOf(w[1]);
      if (got != want)
        Fail() << "segments " << w[1] << ": got " << JoinKeys(got) << ", expected "
               << JoinKeys(want);
    } else if (cmd == "changes") {
      if (!need(2)) return;
      std::vector<std::string> want = Expected();
      std::vector<Change> all = engine_->Changes();
      size_t& from = seen_[w[1]];
      std::vector<Change> got;
      for (size_t i = from; i < all.size(); ++i)
        if (all[i].segment == w[1]) got.push_back(all[i]);
      from = all.size();
      std::string got_text;
      for (const auto& c : got)
        got_text += std::string("\n  ") + testing_util::KindSign(c.kind) + " " + c.profile + " " +
                    CauseName(c.cause) + (c.cause_ref.empty() ? "" : " " + c.cause_ref);
      // Per profile, in order; the interleaving of different profiles is not specified (changes
      // at one instant may come in any profile order).
      bool match = got.size() == want.size();
      std::map<std::string, std::vector<std::vector<std::string>>> want_by, got_by;
      for (const auto& l : want) {
        std::vector<std::string> f = Words(l);
        if (f.size() < 3) {
          Fail() << "bad change line '" << l << "' (want: +|- PROFILE CAUSE [CAUSE_REF])";
          return;
        }
        want_by[f[1]].push_back(f);
      }
      for (const auto& c : got) {
        std::vector<std::string> f = {testing_util::KindSign(c.kind), c.profile, CauseName(c.cause),
                                      c.cause_ref};
        got_by[c.profile].push_back(f);
      }
      for (auto& [profile, ws] : want_by) {
        auto& gs = got_by[profile];
        if (gs.size() != ws.size()) {
          match = false;
          break;
        }
        for (size_t i = 0; i < ws.size(); ++i) {
          const auto& w = ws[i];
          const auto& g = gs[i];
          if (w[0] != g[0] || w[2] != g[2] || (w.size() > 3 && w[3] != g[3])) match = false;
        }
      }
      if (!match)
        Fail() << "changes " << w[1] << " at " << FormatTime(clock_.Now()) << ": got"
               << (got.empty() ? " none" : got_text) << "\nexpected"
               << (want.empty() ? " none" : "\n  " + Join(want, "\n  "));
    } else if (cmd == "explain") {
      if (!need(3)) return;
      std::vector<std::string> want = Expected();
      Result<ExplainNode> e = engine_->Explain(w[1], w[2]);
      if (!e.ok()) return (void)(Fail() << "Explain: " << e.status().ToString());
      std::string text;
      Render(*e, 0, &text);
      for (const auto& s : want)
        if (text.find(s) == std::string::npos)
          Fail() << "explain " << w[1] << " " << w[2] << ": '" << s << "' not in\n" << text;
    } else if (cmd == "print") {
      bool err = w.size() > 1 && w[1] == "error";
      bool sep = false;
      std::string def = Join(Block(true, &sep), "\n");
      if (!sep) return (void)(Fail() << "'print' needs ----");
      std::vector<std::string> want = Block(false);
      for (auto& s : want) s = Trim(s);
      Result<rules::Expr> e = rules::Parse(def);
      if (err) return ExpectErrorContains(e.status(), want, "parse");
      if (!e.ok()) return (void)(Fail() << "parse failed: " << e.status().ToString());
      std::string text = rules::Print(*e);
      if (text != Join(want, "\n"))
        Fail() << "canonical text:\n  got      " << text << "\n  expected " << Join(want, "\n");
      std::string rt = testing_util::CheckRoundTrip(*e);
      if (!rt.empty()) Fail() << rt;
    } else if (cmd == "erase") {
      if (!need(2)) return;
      bool ok = w.size() < 3 || w[1] == "ok";
      const std::string& key = w.size() < 3 ? w[1] : w[2];
      Status st = engine_->EraseProfile(key);
      if (ok) {
        if (!st.ok()) Fail() << "erase " << key << " failed: " << st.ToString();
        for (const std::string& k : model_.Erase(key))
          model_.erased_at[k] = engine_->ComputedChanges().size();
      } else {
        std::vector<std::string> subs;
        if (pos_ < lines_.size() && Trim(lines_[pos_]) == "----") subs = Expected();
        ExpectErrorContains(st, subs, "erase " + key);
      }
    } else if (cmd == "profile") {
      if (!need(3)) return;
      bool want = w[2] == "exists";
      if (engine_->HasProfile(w[1]) != want)
        Fail() << "HasProfile(" << w[1] << ") is " << !want << ", expected " << want;
      if (!want) {
        if (engine_->Traits(w[1]).status().code() != Status::Code::kNotFound)
          Fail() << "Traits(" << w[1] << ") is not kNotFound";
        for (const SegmentInfo& si : engine_->ListSegments())
          if (engine_->Explain(si.name, w[1]).status().code() != Status::Code::kNotFound)
            Fail() << "Explain(" << si.name << ", " << w[1] << ") is not kNotFound";
        if (!engine_->SegmentsOf(w[1]).empty())
          Fail() << "SegmentsOf(" << w[1] << ") = " << JoinKeys(engine_->SegmentsOf(w[1]));
      }
    } else if (cmd == "traits") {
      if (!need(2)) return;
      std::vector<std::string> want = Expected();
      Result<std::vector<Field>> got = engine_->Traits(w[1]);
      std::vector<std::string> got_lines;
      if (!got.ok()) {
        got_lines.push_back(
            got.status().code() == Status::Code::kNotFound ? "not found" : got.status().ToString());
      } else {
        for (const Field& f : *got) got_lines.push_back(f.path + " = " + ValueText(f.value));
      }
      if (got_lines != want)
        Fail() << "traits " << w[1] << ":\n  got      " << Join(got_lines, "\n           ")
               << "\n  expected " << Join(want, "\n           ");
    } else if (cmd == "stats") {
      std::vector<std::string> want = Expected();
      EngineStats st = engine_->Stats();
      for (const std::string& l : want) {
        std::vector<std::string> f = Words(l);
        if (f.size() != 3 || f[1] != "=") {
          Fail() << "bad stats line '" << l << "' (want: profiles|records|timer_fires = N)";
          continue;
        }
        uint64_t got = f[0] == "profiles"      ? st.profiles
                       : f[0] == "records"     ? st.records
                       : f[0] == "timer_fires" ? st.timer_fires
                                               : ~0ull;
        if (std::to_string(got) != f[2])
          Fail() << "stats " << f[0] << " = " << got << ", expected " << f[2];
      }
    } else if (cmd == "account-segments" || cmd == "account-users" || cmd == "accounts") {
      if (!need(2)) return;
      std::vector<std::string> want = Expected();
      std::sort(want.begin(), want.end());
      std::vector<std::string> got;
      if (cmd == "account-segments") {
        got = engine_->SegmentsOf(w[1], SegmentTarget::kAccounts);
      } else if (cmd == "accounts") {
        got = engine_->AccountsOf(w[1]);
      } else {
        Result<std::vector<std::string>> r = engine_->AccountUsers(w[1]);
        if (r.ok())
          got = *r;
        else
          got = {r.status().code() == Status::Code::kNotFound ? "not found"
                                                              : r.status().ToString()};
      }
      if (got != want)
        Fail() << cmd << " " << w[1] << ": got " << JoinKeys(got) << ", expected "
               << JoinKeys(want);
    } else if (cmd == "account") {
      if (!need(2)) return;
      std::vector<std::string> want = Expected();
      Result<std::vector<Field>> got = engine_->AccountTraits(w[1]);
      std::vector<std::string> got_lines;
      if (!got.ok()) {
        got_lines.push_back(
            got.status().code() == Status::Code::kNotFound ? "not found" : got.status().ToString());
      } else {
        for (const Field& f : *got) got_lines.push_back(f.path + " = " + ValueText(f.value));
      }
      if (got_lines != want)
        Fail() << "account " << w[1] << ":\n  got      " << Join(got_lines, "\n           ")
               << "\n  expected " << Join(want, "\n           ");
    } else if (cmd == "lists") {
      std::vector<std::string> want = Expected();
      std::sort(want.begin(), want.end());
      if (engine_->Lists() != want)
        Fail() << "lists: got " << JoinKeys(engine_->Lists()) << ", expected " << JoinKeys(want);
    } else if (cmd == "list") {
      if (!need(3)) return;
      ListStep(w);
    } else {
      Fail() << "unknown command '" << cmd << "'";
    }
  }

  void ListStep(const std::vector<std::string>& w) {
    const std::string& sub = w[1];
    if (sub == "create" || sub == "delete") {
      bool has_mode = w.size() >= 4;
      if (sub == "delete" && !has_mode)
        return (void)(Fail() << "'list delete' needs ok|error and a name");
      bool ok = !has_mode || w[2] == "ok";
      const std::string& name = has_mode ? w[3] : w[2];
      Status st = sub == "create" ? engine_->CreateList(name) : engine_->DeleteList(name);
      if (ok) {
        if (!st.ok())
          return (void)(Fail() << "list " << sub << " " << name << ": " << st.ToString());
        if (sub == "create")
          model_.lists[name];
        else
          model_.lists.erase(name);
      } else {
        std::vector<std::string> subs;
        if (pos_ < lines_.size() && Trim(lines_[pos_]) == "----") subs = Expected();
        ExpectErrorContains(st, subs, "list " + sub + " " + name);
      }
    } else if (sub == "add" || sub == "remove") {
      const std::string& name = w[2];
      std::vector<std::string> keys(w.begin() + 3, w.end());
      Status st =
          sub == "add" ? engine_->AddToList(name, keys) : engine_->RemoveFromList(name, keys);
      if (!st.ok()) return (void)(Fail() << "list " << sub << " " << name << ": " << st.ToString());
      for (const std::string& k : keys) {
        if (sub == "add")
          model_.lists[name].insert(model_.ListKey(k));
        else
          model_.lists[name].erase(model_.ListKey(k));
      }
    } else if (sub == "members") {
      std::vector<std::string> want = Expected();
      std::sort(want.begin(), want.end());
      Result<std::vector<std::string>> got = engine_->ListMembers(w[2]);
      if (!got.ok())
        return (void)(Fail() << "ListMembers(" << w[2] << "): " << got.status().ToString());
      if (*got != want)
        Fail() << "list members " << w[2] << ": got " << JoinKeys(*got) << ", expected "
               << JoinKeys(want);
    } else {
      Fail() << "unknown list command '" << sub << "'";
    }
  }

  // The computed-trait commands; false when `w` is not one of them.
  bool ComputedStep(const std::vector<std::string>& w) {
    const std::string& cmd = w[0];
    auto need = [&](size_t n) {
      if (w.size() < n) Fail() << "'" << cmd << "' needs " << n - 1 << " argument(s)";
      return w.size() >= n;
    };
    if (cmd == "computed" || cmd == "computed-update" || cmd == "account-computed") {
      if (!need(3)) return true;
      bool ok = w[1] == "ok";
      bool sep = false;
      std::string def = Join(Block(!ok, &sep), "\n");
      std::vector<std::string> subs;
      if (!ok) {
        if (!sep) return (void)(Fail() << "'" << cmd << " error' needs ----"), true;
        subs = Block(false);
        for (auto& x : subs) x = Trim(x);
      }
      const bool create = cmd != "computed-update";
      Status st = cmd == "computed" ? engine_->CreateComputedTrait(w[2], def).status()
                  : create
                      ? engine_->CreateComputedTrait(w[2], def, SegmentTarget::kAccounts).status()
                      : engine_->UpdateComputedTrait(w[2], def).status();
      if (ok && !st.ok()) Fail() << cmd << " " << w[2] << " failed: " << st.ToString();
      if (!ok) ExpectErrorContains(st, subs, cmd + " " + w[2]);
      if (ok && st.ok() && create)
        computed_seen_[w[2]] = model_.computed_born[w[2]] = engine_->ComputedChanges().size();
    } else if (cmd == "computed-delete") {
      if (!need(3)) return true;
      Status st = engine_->DeleteComputedTrait(w[2]);
      if (w[1] == "ok") {
        if (!st.ok()) Fail() << "computed-delete " << w[2] << " failed: " << st.ToString();
        if (st.ok()) model_.computed_born.erase(w[2]);
      } else {
        std::vector<std::string> subs;
        if (pos_ < lines_.size() && Trim(lines_[pos_]) == "----") subs = Expected();
        ExpectErrorContains(st, subs, "computed-delete " + w[2]);
      }
    } else if (cmd == "values" || cmd == "account-values") {
      if (!need(2)) return true;
      std::vector<std::string> want = Expected();
      std::vector<std::string> got;
      std::vector<std::string> keys(model_.profiles.begin(), model_.profiles.end());
      if (cmd == "account-values") {
        keys.clear();
        for (const auto& [a, senders] : model_.accounts) keys.push_back(a);
      }
      for (const std::string& p : keys) {
        Result<Value> v = engine_->ComputedTraitOf(w[1], p);
        got.push_back(p + " = " + (v.ok() ? ValueText(*v) : v.status().ToString()));
      }
      if (got != want)
        Fail() << "values " << w[1] << " at " << FormatTime(clock_.Now()) << ":\n  got      "
               << Join(got, "\n           ") << "\n  expected " << Join(want, "\n           ");
    } else if (cmd == "computed-traits" || cmd == "account-computed-traits") {
      if (!need(2)) return true;
      std::vector<std::string> want = Expected();
      Result<std::vector<ComputedTraitValue>> r = cmd == "computed-traits"
                                                      ? engine_->ComputedTraits(w[1])
                                                      : engine_->AccountComputedTraits(w[1]);
      std::vector<std::string> got;
      if (!r.ok())
        got.push_back(r.status().code() == Status::Code::kNotFound ? "not found"
                                                                   : r.status().ToString());
      else
        for (const auto& v : *r) got.push_back(v.name + " = " + ValueText(v.value));
      if (got != want)
        Fail() << "computed-traits " << w[1] << ":\n  got      " << Join(got, "\n           ")
               << "\n  expected " << Join(want, "\n           ");
    } else if (cmd == "computed-changes") {
      if (!need(2)) return true;
      std::vector<std::string> want = Expected();
      std::vector<ComputedChange> all = engine_->ComputedChanges();
      size_t& from = computed_seen_[w[1]];
      std::map<std::string, std::vector<std::string>> got_by, want_by;
      std::string got_text;
      for (size_t i = from; i < all.size(); ++i) {
        const ComputedChange& c = all[i];
        if (c.trait != w[1]) continue;
        std::string line = c.profile + " " + ValueText(c.old_value) + " -> " +
                           ValueText(c.new_value) + " " + CauseName(c.cause) +
                           (c.cause_ref.empty() ? "" : " " + c.cause_ref);
        got_by[c.profile].push_back(line);
        got_text += "\n  " + line;
      }
      from = all.size();
      for (const auto& l : want)
        want_by[Words(l).empty() ? "" : Words(l)[0]].push_back(Join(Words(l), " "));
      for (auto& [p, lines] : got_by)
        for (auto& l : lines) l = Join(Words(l), " ");
      if (got_by != want_by)
        Fail() << "computed-changes " << w[1] << " at " << FormatTime(clock_.Now()) << ": got"
               << (got_text.empty() ? " none" : got_text) << "\nexpected"
               << (want.empty() ? " none" : "\n  " + Join(want, "\n  "));
    } else if (cmd == "computed-print") {
      bool err = w.size() > 1 && w[1] == "error";
      bool sep = false;
      std::string def = Join(Block(true, &sep), "\n");
      if (!sep) return (void)(Fail() << "'computed-print' needs ----"), true;
      std::vector<std::string> want = Block(false);
      for (auto& x : want) x = Trim(x);
      Result<rules::ComputedDef> d = rules::ParseComputed(def);
      if (err) return ExpectErrorContains(d.status(), want, "parse"), true;
      if (!d.ok()) return (void)(Fail() << "parse failed: " << d.status().ToString()), true;
      if (rules::Print(*d) != Join(want, "\n"))
        Fail() << "canonical text:\n  got      " << rules::Print(*d) << "\n  expected "
               << Join(want, "\n");
    } else {
      return false;
    }
    return true;
  }

  // The model's known profiles: every accepted message creates its profile (alias: the
  // userId's) and may merge two (Model::Accept); a group call also makes its account known.
  void NoteProfile(const std::string& json) {
    Message m;
    ingest::DecodeOptions opts;
    opts.now = clock_.Now();
    if (!decoder_.Decode(json, opts, &m).ok()) return;
    model_.Accept(m);
  }

  std::string path_, display_;
  std::vector<std::string> lines_;
  size_t pos_ = 0;
  int step_line_ = 0;
  VirtualClock clock_;
  std::unique_ptr<Engine> engine_;
  std::map<std::string, size_t> born_;           // live segment -> Changes() index at its creation
  std::map<std::string, size_t> seen_;           // segment -> Changes() index consumed by `changes`
  std::map<std::string, size_t> computed_seen_;  // computed trait -> ComputedChanges() index
  testing_util::Model model_;
  ingest::Decoder decoder_;
};

class SegmentFileTest : public ::testing::Test {
 public:
  SegmentFileTest(std::string path, std::string display)
      : path_(std::move(path)), display_(std::move(display)) {}
  void TestBody() override { FileRunner(path_, display_).Run(); }

 private:
  std::string path_, display_;
};

// Registers one case per file at static-initialization time, like TEST() does, so the runner
// works with gtest_main and with gtest_discover_tests.
const int kRegistered = [] {
  fs::path root = fs::path(SHOAL_SOURCE_DIR) / "tests" / "segments";
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::exists(root, ec)) {
    for (const auto& entry : fs::recursive_directory_iterator(root, ec))
      if (entry.is_regular_file() && entry.path().extension() == ".test")
        files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::string rel = fs::relative(f, root).generic_string();
    std::string name = rel.substr(0, rel.size() - 5);
    std::replace(name.begin(), name.end(), '/', '_');
    std::string path = f.string();
    ::testing::RegisterTest(
        "SegmentFiles", name.c_str(), nullptr, rel.c_str(), path.c_str(), 1,
        [path, rel]() -> ::testing::Test* { return new SegmentFileTest(path, rel); });
  }
  return static_cast<int>(files.size());
}();

}  // namespace
}  // namespace shoal
