"""Secrets written into manifests: how to recognise them, and how to show a value without them.

Manifests live in Git and are echoed into pull-request comments, CI logs and findings, so a
credential written in one leaks to everyone who can read any of those. One module decides what
a secret looks like; the ``secrets.plaintext`` policy rule reports them and every renderer masks
them with the same functions, so the rule and the outputs cannot disagree.

A value is secret when its name says so (``DB_PASSWORD``, ``openaiApiKey``, a Kubernetes-style
``{name: DB_PASSWORD, value: ...}`` pair, anything under a ``credentials:`` mapping) or when its
content is in a well-known key format (``sk-proj-...``, ``AKIA...``, ``AccountKey=...``, a PEM
private key...). References to a secret store are not secrets.

Masked values become ``***``: never a hash, which would let anyone with the output test guesses
of a low-entropy password offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from amlops.core.source import FieldPath

MASK = "***"

# -- names ----------------------------------------------------------------------------------

# Substrings of a name squeezed to lower-case letters and digits: ``OPENAI_API_KEY``,
# ``openaiApiKey`` and ``openaiapikey`` all become ``openaiapikey``.
_NAME_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
    "accountkey",  # Azure storage: the AccountKey= of a connection string
    "connectionstring",
)
# Too short to look for inside other words (``tokenizer``, ``kansas``): these must be a word of
# the name, or (``token``) end one (``HFTOKEN``, ``authtoken``).
_NAME_WORDS = ("token", "sas", "pwd")
# A last word that makes the name *about* a secret rather than the secret itself: where it is
# (``SECRET_NAME``, ``secretKeyRef``, ``KEY_VAULT_SECRET_URI``) or how it behaves
# (``max_token_length``, ``sas_expiry``, ``password_policy``).
_ABOUT = frozenset(
    {
        "name",
        "names",
        "ref",
        "reference",
        "id",
        "ids",
        "uri",
        "url",
        "endpoint",
        "path",
        "file",
        "dir",
        "env",
        "var",
        "version",
        "length",
        "len",
        "limit",
        "count",
        "size",
        "max",
        "min",
        "ttl",
        "timeout",
        "expiry",
        "expires",
        "expiration",
        "days",
        "hours",
        "minutes",
        "seconds",
        "enabled",
        "disabled",
        "required",
        "type",
        "mode",
        "policy",
        "scope",
        "scopes",
        "header",
        "provider",
        "format",
        "rotation",
        "source",
        "store",
        "vault",
    }
)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _words(name: str) -> list[str]:
    """``OPENAI_API_KEY`` / ``openaiApiKey`` / ``openai-api-key`` -> ``[openai, api, key]``."""
    return [w.lower() for w in _WORD.findall(name)]


def is_secret_name(name: Any) -> bool:
    """Whether a key with this name holds a credential (``DB_PASSWORD``, ``hfToken``, ``sas``)."""
    return isinstance(name, str) and _secret_name(name)


# Every key of every manifest is looked at on each validation, and keys repeat a lot.
@lru_cache(maxsize=8192)
def _secret_name(name: str) -> bool:
    words = _words(name)
    if not words or words[-1] in _ABOUT:
        return False
    squeezed = "".join(words)
    if any(part in squeezed for part in _NAME_PARTS):
        return True
    return any(w in _NAME_WORDS or w.endswith("token") for w in words)


# -- values ---------------------------------------------------------------------------------

_KEY_CHARS = r"A-Za-z0-9_\-"


@dataclass(frozen=True)
class _Format:
    description: str
    pattern: re.Pattern[str]


def _fmt(description: str, pattern: str, flags: int = 0) -> _Format:
    return _Format(description, re.compile(pattern, flags))


# Each pattern runs to the end of the secret (not just its recognisable prefix) so that masking
# the match hides all of it; ``keep`` is context that stays visible (``AccountKey=***``).
_FORMATS = (
    _fmt(
        "an OpenAI or Anthropic API key",
        rf"\bsk-(?:(?:proj|svcacct|admin|ant)-[{_KEY_CHARS}]{{16,}}|[A-Za-z0-9]{{32,}}"
        rf"|[{_KEY_CHARS}]*T3BlbkFJ[{_KEY_CHARS}]*)",
    ),
    _fmt("an AWS access key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    _fmt("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    _fmt("a Slack token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    _fmt("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
    _fmt("a Google API key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    _fmt(
        "an Azure AD client secret",
        r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])",
    ),
    _fmt(
        "a key or password in a connection string",
        r"(?P<keep>\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)=)"
        r"(?!\$\{)[^;\s\"']+",
        re.IGNORECASE,
    ),
    _fmt("a SAS token signature", r"(?P<keep>(?:^|[?&;])sig=)[A-Za-z0-9%+/=_\-]{10,}"),
    _fmt(
        "a PEM private key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    _fmt(
        "a JSON Web Token", rf"\beyJ[{_KEY_CHARS}]{{8,}}\.eyJ[{_KEY_CHARS}]{{8,}}\.[{_KEY_CHARS}]*"
    ),
    _fmt(
        "a password in a URL",
        r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:)(?!\$\{)[^/\s@]+(?=@)",
    ),
)
# One pass over clean text (nearly all of it) instead of one per format.
_ANY_FORMAT = re.compile(
    "|".join(
        ("(?i:{})" if f.pattern.flags & re.IGNORECASE else "(?:{})").format(
            f.pattern.pattern.replace("(?P<keep>", "(?:")
        )
        for f in _FORMATS
    )
)

# Whole values that point at a secret instead of holding one: an Azure ML binding (secret
# injection uses ``${{azureml://connections/<name>/credentials/<key>}}``), Azure ML's
# ``keyvaultref:`` and App Service's ``@Microsoft.KeyVault(...)`` Key Vault references, and a
# ``${NAME}`` taken from the runtime environment.
_REFERENCE = re.compile(
    r"^\s*(?:\$\{\{.*\}\}|keyvaultref:\S+|@Microsoft\.KeyVault\(.*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\})\s*$",
    re.IGNORECASE | re.DOTALL,
)


def is_reference(value: Any) -> bool:
    """A value that names a secret kept elsewhere (or no value at all): never a leak."""
    if value is None or isinstance(value, bool):
        return True
    return isinstance(value, str) and (not value.strip() or bool(_REFERENCE.match(value)))


def secret_format(value: Any) -> str | None:
    """What kind of credential ``value`` holds (``"an AWS access key"``), or None."""
    return _secret_format(value) if isinstance(value, str) else None


# Values repeat too (environments, computes, bindings); nearly all fail the one combined search.
@lru_cache(maxsize=8192)
def _secret_format(value: str) -> str | None:
    if not _ANY_FORMAT.search(value) or is_reference(value):
        return None
    return next((f.description for f in _FORMATS if f.pattern.search(value)), None)


def looks_like_secret(value: Any) -> bool:
    """Whether the content of ``value`` is in a well-known credential format."""
    return secret_format(value) is not None


def scrub(text: str) -> str:
    """``text`` with every credential in a known format replaced by ``***``: for free text
    (messages, paths) where only part of the string is secret."""
    if not _ANY_FORMAT.search(text):
        return text
    for f in _FORMATS:
        text = f.pattern.sub(lambda m: (m.groupdict().get("keep") or "") + MASK, text)
    return text


def _is_literal(value: Any) -> bool:
    return isinstance(value, str | int | float) and not is_reference(value)


def mask(value: Any, *, hidden: bool = False) -> Any:
    """A copy of ``value`` safe to print: literals under secret names (``hidden``: the value
    itself is under one) become ``***``, credentials inside other strings are scrubbed."""
    if isinstance(value, Mapping):
        return {
            scrub(str(k)) if isinstance(k, str) else k: mask(
                v, hidden=hidden_child(value, k, hidden)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask(v, hidden=hidden) for v in value]
    if hidden and _is_literal(value):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    return value


def hidden_child(parent: Mapping[Any, Any], key: Any, hidden: bool = False) -> bool:
    """Whether ``parent[key]`` is secret by its name: under a secret-named key (``hidden``), a
    secret-named key itself, or the value of a name/value pair naming a credential
    (``{name: DB_PASSWORD, value: ...}``, as Kubernetes ``env:`` lists write them)."""
    if hidden or is_secret_name(key):
        return True
    if key == "value":
        return is_secret_name(parent.get("name")) or is_secret_name(parent.get("key"))
    return False


# -- finding them ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """A plaintext secret at ``path``; ``reason`` says why, never what the value is."""

    path: FieldPath
    reason: str
    value: Any


def find_secrets(value: Any, path: FieldPath = (), *, hidden: bool = False) -> Iterator[Hit]:
    """Every literal secret in ``value`` (a manifest body), in document order."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = (*path, key if isinstance(key, str | int) else str(key))
            described = secret_format(key)
            if described is not None:
                yield Hit(child, f"the key itself looks like {described}", key)
            below = hidden_child(value, key, hidden)
            if below and not hidden and _is_literal(item):
                yield Hit(child, _name_reason(value, key), item)
            else:
                yield from find_secrets(item, child, hidden=below)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from find_secrets(item, (*path, i), hidden=hidden)
    elif hidden and _is_literal(value):
        yield Hit(path, "it sits under a name that says it is a credential", value)
    elif (described := secret_format(value)) is not None:
        yield Hit(path, f"the value looks like {described}", value)


def _name_reason(parent: Mapping[Any, Any], key: Any) -> str:
    if is_secret_name(key):
        return f"its name {key!r} says it is a credential"
    named = parent.get("name") if is_secret_name(parent.get("name")) else parent.get("key")
    return f"it is the value of {named!r}, whose name says it is a credential"


def secret_literals(value: Any) -> set[str]:
    """The secret values in ``value`` as they may be quoted in a message (plain, ``repr``,
    JSON), for removing them from text that was written without knowing they are secret."""
    out: set[str] = set()
    for hit in find_secrets(value):
        literal = hit.value
        out.update((str(literal), repr(literal), json.dumps(literal)))
        if isinstance(literal, str):
            out.add(literal.strip())
    return {t for t in out if t}


def redact_text(text: str, literals: Iterable[str]) -> str:
    """``text`` with each of ``literals`` (see ``secret_literals``) and every credential in a
    known format replaced by ``***``. Longest first, so a quoted form goes before its core."""
    for literal in sorted(set(literals), key=len, reverse=True):
        if literal in text:
            text = re.sub(rf"(?<!\w){re.escape(literal)}(?!\w)", MASK, text)
    return scrub(text)
