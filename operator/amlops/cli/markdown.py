"""User text in Markdown that GitHub and GitLab render as exactly that text: PR comments.

A manifest is hostile input: a value must not add headings, mentions, images, links or table
columns to a comment, nor close the code block it is shown in.
"""

from __future__ import annotations

import html
import re

from amlops.cli.formats import printable

NAME_LIMIT = 200  # one long name or message must not eat the comment on its own

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that start
# inline constructs (code, emphasis, links and images, strikethrough, table cells, math).
_MD_SPECIAL = re.compile(r"[\\`*_\[\]|~$]")
# @user and @org/team notify people; #123 and owner/repo#123 post a back-reference into another
# issue's timeline. A zero-width space after the sigil leaves the text readable and inert.
_NOTIFY = re.compile(r"([@#])(?=\w)")
_BACKTICKS = re.compile(r"`+")


def clip(text: str, limit: int = NAME_LIMIT) -> str:
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _inert(text: str) -> str:
    return _NOTIFY.sub("\\1\u200b", text)


def md_text(text: str, limit: int = NAME_LIMIT) -> str:
    """User text as Markdown that renders as exactly that text, also inside a table cell."""
    escaped = html.escape(clip(text, limit), quote=False)
    return _inert(_MD_SPECIAL.sub(r"\\\g<0>", escaped))


def md_html(text: str, limit: int = NAME_LIMIT) -> str:
    """User text inside raw HTML (``<summary>``), where Markdown is not parsed."""
    return _inert(html.escape(clip(text, limit), quote=True))


def md_code(text: str, *, in_table: bool = False, limit: int = NAME_LIMIT) -> str:
    """User text as an inline code span: the fence is longer than any run of backticks in it.

    Inside a code span nothing (HTML, mentions, emphasis) is interpreted; only a table splits
    a row on ``|`` before it sees the span, so there the pipes are escaped too.
    """
    text = clip(text, limit)
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (max(map(len, _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fence(lines: list[str]) -> str:
    """A code-block fence no line of the block can close: longer than any backtick run."""
    longest = max((len(run) for line in lines for run in _BACKTICKS.findall(line)), default=0)
    return "`" * max(3, longest + 1)
