"""k-shot MMLU prompts as the C++ scorer builds them (src/attncache/tasks/multiple_choice.cc), for the Python
measurements over real maps (map_tile_sparsity.py, map_format_accuracy.py)."""


def question(row, answered=True):
    """One CSV row (question, A-D, answer) as "…\\nA. …\\n…Answer:", with " X\\n\\n" if answered."""
    text = row[0] + "\n" + "".join(f"{l}. {t}\n" for l, t in zip("ABCD", row[1:5])) + "Answer:"
    return text + (" " + row[5] + "\n\n" if answered else "")


def prompt(subject, examples, asked):
    """The solved `examples`, then `asked` unanswered, under the subject's header."""
    return (f"The following are multiple choice questions (with answers) about "
            f"{subject.replace('_', ' ')}.\n\n"
            + "".join(question(r) for r in examples) + question(asked, answered=False))
