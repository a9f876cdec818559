"""Splits the support tickets into train and test sets.

Every `*.txt` file of --tickets is read in name order; blank lines are dropped and the rest
normalised to lower case. Every --test-every'th line goes to the test set, so the split is the
same on every run (the pipeline's outputs, and the model it registers, are reproducible).
"""

import argparse
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description="split support tickets into train/test")
    parser.add_argument("--tickets", type=Path, required=True, help="folder of *.txt files")
    parser.add_argument("--train", type=Path, required=True, help="output folder")
    parser.add_argument("--test", type=Path, required=True, help="output folder")
    parser.add_argument("--test-every", type=int, default=10)
    args = parser.parse_args()

    lines = []
    for path in sorted(args.tickets.glob("*.txt")):
        lines += [line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise SystemExit(f"no tickets found in {args.tickets} (expected *.txt files)")

    test = [line for i, line in enumerate(lines) if i % args.test_every == args.test_every - 1]
    train = [line for i, line in enumerate(lines) if i % args.test_every != args.test_every - 1]
    for folder, part in ((args.train, train), (args.test, test)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tickets.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    print(f"{len(lines)} tickets: {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    main()
