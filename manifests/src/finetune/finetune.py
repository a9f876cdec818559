"""Fine-tunes a bigram language model: adds the training set's counts to the base model's.

Each epoch adds the domain counts once more, so --epochs is the weight of the support tickets
against the general English the base model was trained on.
"""

import argparse
import json
import re
from pathlib import Path


def find_model(folder):
    # AZUREML_MODEL_DIR-style folders hold the model one level down (<dir>/<model folder>/...).
    found = sorted(Path(folder).rglob("model.json"))
    if not found:
        raise SystemExit(f"no model.json under {folder}")
    return found[0]


def main():
    parser = argparse.ArgumentParser(description="fine-tune a bigram language model")
    parser.add_argument("--base", type=Path, required=True, help="folder holding model.json")
    parser.add_argument("--train", type=Path, required=True, help="folder of *.txt lines")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model", type=Path, required=True, help="output folder")
    args = parser.parse_args()
    if args.epochs < 1:
        raise SystemExit("--epochs must be at least 1")

    model = json.loads(find_model(args.base).read_text(encoding="utf-8"))
    tok = model["tokenizer"]
    lines = []
    for path in sorted(args.train.glob("*.txt")):
        lines += path.read_text(encoding="utf-8").splitlines()

    unigrams, bigrams = model["unigrams"], model["bigrams"]
    for _ in range(args.epochs):
        for line in lines:
            words = re.findall(tok["pattern"], line.lower() if tok["lowercase"] else line)
            if not words:
                continue
            tokens = [tok["bos"], *words, tok["eos"]]
            for prev, word in zip(tokens, tokens[1:]):
                unigrams[word] = unigrams.get(word, 0) + 1
                following = bigrams.setdefault(prev, {})
                following[word] = following.get(word, 0) + 1
    model["training"].append({"corpus": "support-tickets", "lines": len(lines), "epochs": args.epochs})

    args.model.mkdir(parents=True, exist_ok=True)
    (args.model / "model.json").write_text(json.dumps(model, sort_keys=True, indent=1) + "\n")
    print(f"fine-tuned on {len(lines)} lines x {args.epochs} epochs: {len(unigrams)} words")


if __name__ == "__main__":
    main()
