"""Checks a fine-tuned model and its evaluation, then writes the folder that becomes the Model.

The pipeline output this writes to carries `name`/`version`, so the platform registers the
folder as a model version once the run completes. Nothing here depends on the clock, so the
same training data gives a byte-identical folder (and re-registering it is a no-op).
"""

import argparse
import json
import shutil
from pathlib import Path

CARD = """# support-slm

A word-level bigram language model: `slm-base` fine-tuned on support tickets.

| training | lines | epochs |
|---|---|---|
{training}

Held-out perplexity: {perplexity} on {test_tokens} tokens of {test_lines} tickets
(gate: {max_perplexity}).

Use: next-words suggestions for support agents. It knows {words} words and one word of context.
"""


def main():
    parser = argparse.ArgumentParser(description="validate and package a fine-tuned model")
    parser.add_argument("--model", type=Path, required=True, help="folder holding model.json")
    parser.add_argument("--report", type=Path, required=True, help="folder holding report.json")
    parser.add_argument("--out", type=Path, required=True, help="folder to register")
    args = parser.parse_args()

    model_file, report_file = args.model / "model.json", args.report / "report.json"
    for required in (model_file, report_file):
        if not required.is_file():
            raise SystemExit(f"missing {required}")
    model = json.loads(model_file.read_text(encoding="utf-8"))
    report = json.loads(report_file.read_text(encoding="utf-8"))
    if model.get("format") != "amlops-bigram-lm/1":
        raise SystemExit(f"unknown model format {model.get('format')!r}")
    if not report.get("passed"):
        raise SystemExit(f"evaluation did not pass: {report}")

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, args.out / "model.json")
    shutil.copyfile(report_file, args.out / "evaluation.json")
    training = "\n".join(
        f"| {t['corpus']} | {t['lines']} | {t['epochs']} |" for t in model["training"]
    )
    card = CARD.format(training=training, words=len(model["unigrams"]), **report)
    (args.out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    print(f"packaged {args.out}: perplexity {report['perplexity']}")


if __name__ == "__main__":
    main()
