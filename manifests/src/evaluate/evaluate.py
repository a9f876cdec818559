"""Held-out perplexity of a bigram language model; fails the pipeline above --max-perplexity.

Witten-Bell interpolation with an add-one unigram back-off:
P(word | prev) = l * count(prev, word) / n + (1 - l) * (count(word) + 1) / (N + V + 1)
with n = count(prev, *), l = n / (n + t), t the number of distinct words seen after prev, N the
number of tokens and V the vocabulary size; the +1 is the share of every word never seen.
"""

import argparse
import json
import math
import re
from pathlib import Path


def find_model(folder):
    found = sorted(Path(folder).rglob("model.json"))
    if not found:
        raise SystemExit(f"no model.json under {folder}")
    return found[0]


def perplexity(model, lines):
    if model.get("smoothing") != "witten-bell/add-one":
        raise SystemExit(f"unsupported smoothing {model.get('smoothing')!r}")
    tok, unigrams, bigrams = model["tokenizer"], model["unigrams"], model["bigrams"]
    total, vocab = sum(unigrams.values()), len(unigrams)
    log_prob, count = 0.0, 0
    for line in lines:
        words = re.findall(tok["pattern"], line.lower() if tok["lowercase"] else line)
        if not words:
            continue
        tokens = [tok["bos"], *words, tok["eos"]]
        for prev, word in zip(tokens, tokens[1:]):
            unigram = (unigrams.get(word, 0) + 1) / (total + vocab + 1)
            following = bigrams.get(prev, {})
            n, t = sum(following.values()), len(following)
            lam = n / (n + t) if n else 0.0
            bigram = following.get(word, 0) / n if n else 0.0
            log_prob += math.log(lam * bigram + (1 - lam) * unigram)
            count += 1
    return math.exp(-log_prob / count), count


def main():
    parser = argparse.ArgumentParser(description="evaluate a bigram language model")
    parser.add_argument("--model", type=Path, required=True, help="folder holding model.json")
    parser.add_argument("--test", type=Path, required=True, help="folder of *.txt lines")
    parser.add_argument("--max-perplexity", type=float, required=True)
    parser.add_argument("--report", type=Path, required=True, help="output folder")
    args = parser.parse_args()

    model = json.loads(find_model(args.model).read_text(encoding="utf-8"))
    lines = []
    for path in sorted(args.test.glob("*.txt")):
        lines += path.read_text(encoding="utf-8").splitlines()
    ppl, tokens = perplexity(model, lines)
    passed = ppl <= args.max_perplexity
    report = {
        "perplexity": round(ppl, 3),
        "max_perplexity": args.max_perplexity,
        "test_lines": len(lines),
        "test_tokens": tokens,
        "passed": passed,
    }
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "report.json").write_text(json.dumps(report, sort_keys=True, indent=1) + "\n")
    print(f"held-out perplexity {ppl:.2f} on {tokens} tokens (max {args.max_perplexity})")
    if not passed:
        raise SystemExit(f"perplexity {ppl:.2f} is above --max-perplexity {args.max_perplexity}")


if __name__ == "__main__":
    main()
