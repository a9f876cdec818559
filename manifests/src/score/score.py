"""Scoring script for the support-slm endpoint (the Azure ML online-deployment contract).

init() loads the bigram model from AZUREML_MODEL_DIR; run() completes a prompt with the most
likely next words: {"prompt": "i cannot log", "max_tokens": 6} -> {"completion": "in to my ..."}.
"""

import json
import os
import re

from azureml_inference_server_http.api.aml_response import AMLResponse

MODEL = {}
MAX_TOKENS_LIMIT = 50


def _find_model(model_dir):
    # Azure ML mounts a folder-registered model one level down: $AZUREML_MODEL_DIR/<folder>/.
    for root, _, files in sorted(os.walk(model_dir, followlinks=True)):
        if "model.json" in files:
            return os.path.join(root, "model.json")
    raise FileNotFoundError(f"no model.json under AZUREML_MODEL_DIR={model_dir}")


def init():
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir:
        raise RuntimeError("AZUREML_MODEL_DIR is not set")
    with open(_find_model(model_dir), encoding="utf-8") as f:
        MODEL.update(json.load(f))


def _complete(prompt, max_tokens):
    tok, bigrams = MODEL["tokenizer"], MODEL["bigrams"]
    words = re.findall(tok["pattern"], prompt.lower() if tok["lowercase"] else prompt)
    prev = words[-1] if words and words[-1] in bigrams else tok["bos"]
    out, used = [], set()
    for _ in range(max_tokens):
        ranked = sorted(bigrams.get(prev, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        # Greedy decoding loops on a bigram model ("the the the"); never reuse a word pair.
        nxt = next((w for w, _ in ranked if (prev, w) not in used), None)
        if nxt is None or nxt == tok["eos"]:
            break
        used.add((prev, nxt))
        out.append(nxt)
        prev = nxt
    return re.sub(r" ([.,!?])", r"\1", " ".join(out))


def run(raw_data):
    try:
        data = json.loads(raw_data)
        prompt = data["prompt"]
        max_tokens = int(data.get("max_tokens", 8))
    except (ValueError, TypeError, KeyError):
        return AMLResponse('send {"prompt": "some words", "max_tokens": 8}', 400)
    if not isinstance(prompt, str) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        return AMLResponse(f"prompt must be a string and max_tokens 1..{MAX_TOKENS_LIMIT}", 400)
    completion = _complete(prompt, max_tokens)
    text = re.sub(r" ([.,!?])", r"\1", f"{prompt} {completion}".strip())
    return {"prompt": prompt, "completion": completion, "text": text}
