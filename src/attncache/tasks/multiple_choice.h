// Multiple-choice questions in the MMLU layout and the prompt the evaluation harnesses build from
// them (lm-evaluation-harness's MMLU task, the format of the original paper): a header naming the
// subject, k solved examples from the subject's dev split, the question with options A-D, and
// "Answer:". A model answers with the option letter whose token gets the highest logit.
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

namespace attncache::tasks {

struct McQuestion {
  std::string subject;  // "high_school_geography"
  std::string question;
  std::array<std::string, 4> options;
  int answer = -1;  // 0..3 (A..D); -1 when unlabelled
};

// Parses one MMLU CSV file (RFC 4180: quoted fields, doubled quotes, newlines inside quotes; no
// header): question,A,B,C,D[,answer]. Throws core::Error (bad input) naming the file and row for
// a wrong number of fields, an answer other than A-D, or an unterminated quote.
std::vector<McQuestion> read_mmlu_csv(const std::string& path, const std::string& subject);

// Every <dir>/<split>/<subject>_<split>.csv, subjects in name order. Throws core::Error (bad
// input) when the folder is missing or holds no such file.
std::vector<McQuestion> read_mmlu_split(const std::string& dir, const std::string& split);

// The solved examples of each subject's prompts: the first `shots` of its dev questions.
class FewShotExamples {
 public:
  // Throws core::Error (bad input) for shots outside 0..5 or an unlabelled dev question.
  FewShotExamples(const std::vector<McQuestion>& dev, int shots);
  // Throws core::Error (bad input) when the subject has fewer dev questions than shots.
  const std::vector<const McQuestion*>& of(const std::string& subject) const;
  int shots() const { return shots_; }

 private:
  int shots_;
  std::map<std::string, std::vector<const McQuestion*>> examples_;
};

// The k-shot prompt of every question, in order.
std::vector<std::string> mmlu_prompts(const std::vector<McQuestion>& questions,
                                      const std::vector<McQuestion>& dev, int shots);

// "high_school_geography" -> "high school geography".
std::string subject_name(const std::string& subject);

// The k-shot prompt for `q`; `shots` are solved examples (answers required), usually the first k
// of the subject's dev split. Ends with "Answer:" so the next token is " A" … " D".
std::string mmlu_prompt(const McQuestion& q, const std::vector<const McQuestion*>& shots);

// The header and examples alone: the part every question of a subject shares at k shots.
std::string mmlu_header(const std::string& subject, const std::vector<const McQuestion*>& shots);

}  // namespace attncache::tasks
