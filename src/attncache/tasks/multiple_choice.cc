#include "attncache/tasks/multiple_choice.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace attncache::tasks {
namespace fs = std::filesystem;
namespace {

// Splits RFC 4180 CSV text into records of fields.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& path) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false, in_record = false;
  size_t line = 1, record_line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (!in_record) record_line = line;
    in_record = true;
    if (c == '"' && field.empty()) {
      quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line;
      fields.push_back(std::move(field));
      field.clear();
      records.push_back(std::move(fields));
      fields.clear();
      in_record = false;
    } else {
      field += c;
    }
  }
  if (quoted)
    core::throw_bad_input(path, ": a quoted field opened on line ", record_line,
                          " is never closed");
  if (in_record) {
    fields.push_back(std::move(field));
    records.push_back(std::move(fields));
  }
  return records;
}

}  // namespace

std::vector<McQuestion> read_mmlu_csv(const std::string& path, const std::string& subject) {
  std::ifstream in(path, std::ios::binary);
  if (!in) core::throw_bad_input("cannot read ", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::vector<McQuestion> out;
  size_t row = 0;
  for (auto& f : parse_csv(buffer.str(), path)) {
    ++row;
    if (f.size() != 5 && f.size() != 6) {
      core::throw_bad_input(path, ": row ", row, " has ", f.size(),
                            " fields; expected question,A,B,C,D[,answer]");
    }
    McQuestion q;
    q.subject = subject;
    q.question = std::move(f[0]);
    for (int k = 0; k < 4; ++k) q.options[k] = std::move(f[1 + k]);
    if (f.size() == 6) {
      const std::string& a = f[5];
      if (a.size() != 1 || a[0] < 'A' || a[0] > 'D') {
        core::throw_bad_input(path, ": row ", row, " has answer '", a, "'; expected A, B, C or D");
      }
      q.answer = a[0] - 'A';
    }
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<McQuestion> read_mmlu_split(const std::string& dir, const std::string& split) {
  const fs::path folder = fs::path(dir) / split;
  if (!fs::is_directory(folder)) {
    core::throw_bad_input(folder.string(),
                          " does not exist (an MMLU folder holds dev/, test/ "
                          "… of <subject>_<split>.csv; scripts/fetch-datasets.sh "
                          "mmlu fetches it)");
  }
  const std::string suffix = "_" + split + ".csv";
  std::vector<fs::path> files;
  for (const auto& item : fs::directory_iterator(folder)) {
    const std::string name = item.path().filename().string();
    if (name.size() > suffix.size() && name.ends_with(suffix)) files.push_back(item.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) core::throw_bad_input(folder.string(), ": no <subject>", suffix, " files");
  std::vector<McQuestion> out;
  for (const fs::path& p : files) {
    const std::string name = p.filename().string();
    auto qs = read_mmlu_csv(p.string(), name.substr(0, name.size() - suffix.size()));
    std::move(qs.begin(), qs.end(), std::back_inserter(out));
  }
  return out;
}

FewShotExamples::FewShotExamples(const std::vector<McQuestion>& dev, int shots) : shots_(shots) {
  if (shots < 0 || shots > 5) core::throw_bad_input("shots must lie in 0..5 (got ", shots, ")");
  for (const McQuestion& q : dev) {
    if (q.answer < 0) core::throw_bad_input("a dev question of ", q.subject, " has no answer");
    auto& list = examples_[q.subject];
    if (static_cast<int>(list.size()) < shots) list.push_back(&q);
  }
}

const std::vector<const McQuestion*>& FewShotExamples::of(const std::string& subject) const {
  static const std::vector<const McQuestion*> none;
  auto it = examples_.find(subject);
  const auto& list = it == examples_.end() ? none : it->second;
  if (static_cast<int>(list.size()) < shots_) {
    core::throw_bad_input("subject ", subject, " has ", list.size(), " dev questions; ", shots_,
                          " shots need that many");
  }
  return list;
}

std::vector<std::string> mmlu_prompts(const std::vector<McQuestion>& questions,
                                      const std::vector<McQuestion>& dev, int shots) {
  const FewShotExamples examples(dev, shots);
  std::vector<std::string> out;
  out.reserve(questions.size());
  for (const McQuestion& q : questions) out.push_back(mmlu_prompt(q, examples.of(q.subject)));
  return out;
}

std::string subject_name(const std::string& subject) {
  std::string s = subject;
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

std::string mmlu_header(const std::string& subject, const std::vector<const McQuestion*>& shots) {
  std::string p = "The following are multiple choice questions (with answers) about " +
                  subject_name(subject) + ".\n\n";
  for (const McQuestion* s : shots) {
    if (s->answer < 0) core::throw_internal("a few-shot example without an answer");
    p += s->question;
    for (int k = 0; k < 4; ++k) p += std::string("\n") + char('A' + k) + ". " + s->options[k];
    p += std::string("\nAnswer: ") + char('A' + s->answer) + "\n\n";
  }
  return p;
}

std::string mmlu_prompt(const McQuestion& q, const std::vector<const McQuestion*>& shots) {
  std::string p = mmlu_header(q.subject, shots) + q.question;
  for (int k = 0; k < 4; ++k) p += std::string("\n") + char('A' + k) + ". " + q.options[k];
  return p + "\nAnswer:";
}

}  // namespace attncache::tasks
