"""Builds slm-base/model.json: a word-level bigram language model of corpus/general-english.txt.

Run from this folder: `python build_slm_base.py`. The output is deterministic (sorted keys), so
rebuilding without changing the corpus gives byte-identical files and the same sha256.
"""

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

# The model carries its own tokenizer so every script that reads it tokenizes the same way.
TOKENIZER = {"pattern": r"[a-z0-9']+|[.,!?]", "lowercase": True, "bos": "<s>", "eos": "</s>"}
# How evaluate.py turns counts into probabilities: Witten-Bell interpolation of the bigram
# estimate with an add-one unigram back-off (the +1 is the share of words never seen).
SMOOTHING = "witten-bell/add-one"


def count(lines, tokenizer):
    unigrams, bigrams = Counter(), defaultdict(Counter)
    for line in lines:
        text = line.lower() if tokenizer["lowercase"] else line
        words = re.findall(tokenizer["pattern"], text)
        if not words:
            continue
        tokens = [tokenizer["bos"], *words, tokenizer["eos"]]
        unigrams.update(tokens[1:])
        for prev, word in zip(tokens, tokens[1:]):
            bigrams[prev][word] += 1
    return unigrams, bigrams


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("corpus/general-english.txt"))
    parser.add_argument("--out", type=Path, default=Path("slm-base"))
    args = parser.parse_args()
    lines = args.corpus.read_text(encoding="utf-8").splitlines()
    unigrams, bigrams = count(lines, TOKENIZER)
    model = {
        "format": "amlops-bigram-lm/1",
        "tokenizer": TOKENIZER,
        "smoothing": SMOOTHING,
        "unigrams": dict(unigrams),
        "bigrams": {prev: dict(nxt) for prev, nxt in bigrams.items()},
        "training": [{"corpus": args.corpus.stem, "lines": len(lines), "epochs": 1}],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_text(json.dumps(model, sort_keys=True, indent=1) + "\n")
    print(f"{args.out}/model.json: {len(unigrams)} words, {sum(unigrams.values())} tokens")


if __name__ == "__main__":
    main()
