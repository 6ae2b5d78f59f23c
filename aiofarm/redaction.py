"""Keeping secrets out of reprs, messages and log records.

Two rules, applied everywhere text about a call leaves aiofarm (``repr``/``str`` of
the models and the :class:`~aiofarm.Client`, every :class:`~aiofarm.FarmError`'s
message, records of the ``aiofarm`` loggers):

- **values**: a job's environment values are never shown, whatever their names
  (``env={'PATH': '***'}``); nor are option/parameter values whose *name* looks
  secret (:func:`is_secret_name`: ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``,
  ``*PASSWD*``, ``*KEY*``, ``*CREDENTIAL*``, ``*AUTH*``, ``*SESSION*``, ``*COOKIE*``).
- **text**: :func:`redact` masks what looks like a secret inside free text: a URL's
  password, the value of a secret-named ``?query=`` option or ``NAME=value`` pair,
  ``Bearer``/``Basic`` credentials, JSON Web Tokens, AWS access key ids and
  secret keys.

:class:`aiofarm.Secret` (in models.py) wraps one value so that nothing (repr, str,
f-string) shows it; the drivers unwrap it (``Secret.reveal()``) only where it is sent.
Documented in docs/reliability.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["LOGGERS", "MASK", "install_log_filters", "is_secret_name", "redact", "redact_mapping", "redact_url"]

MASK = "***"
# names of variables and options: the documented rule (*TOKEN*, *SECRET*, *PASSWORD*, *KEY*...)
_NAME_WORDS = r"token|secret|password|passwd|key|credential|auth|cookie"
_SECRET_NAME = re.compile(_NAME_WORDS, re.IGNORECASE)
# inside free text ("NAME=value", "name: value") "key" and "auth" alone would mask
# ordinary words of error messages ("sort key: priority"), so only their secret forms
_TEXT_WORDS = (
    r"token|secret|password|passwd|credential|authorization|cookie"
    r"|api[_-]?key|access[_-]?key|private[_-]?key|secret[_-]?key|signing[_-]?key"
)
_QUERY_WORDS = _NAME_WORDS + "|headers"


def _aws_secret(match: re.Match[str]) -> str:
    text = match.group(0)
    # random base64: both cases and a digit; a 40-hex digest or an id is not masked
    mixed = any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)
    return MASK if mixed else text


_RULES: tuple[tuple[re.Pattern[str], Any], ...] = (
    # scheme://user:password@host
    (re.compile(r"(//[^/@:\s]*:)[^/@\s]*@"), r"\1***@"),
    # ?token=... &aws_secret_access_key=...
    (re.compile(rf"([?&;](?:[^=&#\s]*(?:{_QUERY_WORDS})[^=&#\s]*)=)[^&#\s]*", re.IGNORECASE), r"\1***"),
    # Authorization: Bearer abc / Basic abc
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE), r"\1 ***"),
    # JSON Web Tokens: three base64url parts, the first two JSON objects ("eyJ")
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA|ANPA|ANVA|AGPA)[A-Z0-9]{16}\b"), MASK),
    # NAME=value / NAME: value / "NAME": "value" where NAME looks secret
    (
        re.compile(
            rf"""(\b[A-Za-z0-9_.-]*(?:{_TEXT_WORDS})[A-Za-z0-9_.-]*["']?\s*[=:]\s*["']?)[^\s"',;&}}]+""",
            re.IGNORECASE,
        ),
        r"\1***",
    ),
    # token 'abc', password "abc": a quoted value right after the word
    (re.compile(r"""\b((?:token|password|passwd|secret)\s+)(['"])[^'"\s]+\2""", re.IGNORECASE), r"\1\2***\2"),
    # a bare 40-character AWS secret access key
    (re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"), _aws_secret),
)


def is_secret_name(name: object) -> bool:
    """Whether a variable/option named ``name`` holds a secret by the naming rule."""
    return isinstance(name, str) and _SECRET_NAME.search(name) is not None


def redact(text: str) -> str:
    """``text`` with everything that looks like a secret replaced by ``***``."""
    if not isinstance(text, str):  # pragma: no cover - typed callers
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """``url`` with its password and secret-named query values masked."""
    return redact(url)


def redact_mapping(values: Mapping[str, Any], *, all_values: bool = False) -> dict[str, Any]:
    """A copy for display: every value masked (``all_values``), else those whose name
    looks secret (a ``Secret`` value shows itself as ``***``)."""
    return {k: MASK if all_values or is_secret_name(k) else v for k, v in values.items()}


class RedactingFilter(logging.Filter):
    """Masks secrets in every record of the ``aiofarm`` loggers (message and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logger's problem, not a leak
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()
#: every logger aiofarm's client side writes to (a logger's filter does not apply to
#: its children's records, so each is named)
LOGGERS = ("aiofarm", "aiofarm.watch", "aiofarm.release", "aiofarm.deadline", "aiofarm.slurm", "aiofarm.ray",
           "aiofarm.local")


def install_log_filter(logger: logging.Logger) -> None:
    """Attach the redacting filter to ``logger`` (once)."""
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def install_log_filters() -> None:
    for name in LOGGERS:
        install_log_filter(logging.getLogger(name))
