#!/usr/bin/env python3
"""Builds preference pairs from GSM8K train for `laser-host dpo`.

Each pair's prompt is the question, `chosen` the data set's solution and
`rejected` the same solution with its final answer changed to a wrong
number everywhere it appears (the `#### N` line and the last computation).
The calculator annotations `<<48/2=24>>` are removed from both, as is usual
when GSM8K solutions are used as training text. The first COUNT problems
whose cleaned solution has at most MAX_CHARS characters are used, in file
order.

Usage: gsm8k_pairs.py TRAIN_JSONL COUNT MAX_CHARS > pairs.jsonl
"""

import json
import random
import re
import sys


def corrupt(solution: str, rng: random.Random) -> str:
    """Returns `solution` with its final number replaced by a wrong one."""
    answer = solution.rsplit("####", 1)[1].strip()
    value = float(answer.replace(",", ""))
    wrong = value + rng.choice([-3, -2, -1, 1, 2, 3, 10])
    wrong_text = str(int(wrong)) if wrong == int(wrong) else str(wrong)
    # Replace the number only where it is not part of a longer number.
    pattern = r"(?<!\d)(?<!\d\.)" + re.escape(answer) + r"(?!\.?\d)"
    return re.sub(pattern, wrong_text, solution)


def main() -> None:
    path, count, max_chars = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(0)
    written = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            solution = re.sub(r"<<[^>]*>>", "", record["answer"])
            if len(solution) > max_chars:
                continue
            rejected = corrupt(solution, rng)
            if rejected == solution:
                continue
            pair = {"prompt": record["question"], "chosen": solution, "rejected": rejected}
            print(json.dumps(pair))
            written += 1
            if written == count:
                break


if __name__ == "__main__":
    main()
