"""Remove credentials from anything lcup writes or prints (summary, Zarr attributes, logs, errors).

A pipeline may carry secrets in a catalog URL (``?token=…``, ``https://user:password@host``), in a
signed asset href (Azure SAS ``sig=…``, AWS ``X-Amz-Signature=…``) or in cluster options (a Gateway
password). :func:`redact` replaces their values by ``***`` in strings and, recursively, in mappings
and lists; :class:`RedactingFilter` does the same for log records.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

#: Query parameters and mapping keys whose values are credentials (matched case-insensitively, in full).
SECRET_KEYS = re.compile(
    r"(?:.*(?:token|secret|password|passwd|pwd|apikey|api_key|api-key|credential|signature|authorization).*|sig|se|st|sp|sv|skoid|sktid"
    r"|skt|ske|sks|skv|key|x-amz-[a-z-]+|x-goog-[a-z-]+|code)",
    re.IGNORECASE,
)

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/\s:@]+):(?P<pw>[^/\s@]+)@", re.IGNORECASE)
_QUERY = re.compile(r"(?P<sep>[?&;])(?P<key>[^=&\s#;'\"]+)=(?P<val>[^&\s#;'\"]*)")
_ASSIGN = re.compile(r"(?P<key>\b[\w.-]*(?:token|secret|password|passwd|api_key|apikey)\b)(?P<op>\s*[=:]\s*)(?P<q>['\"]?)(?P<val>[^\s'\",&]+)",
                     re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with URL passwords, secret query values and ``password=…``-style assignments masked.

    Examples
    --------
    >>> redact_text("https://me:hunter2@host/x?token=abc&limit=5")
    'https://me:***@host/x?token=***&limit=5'
    """
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _QUERY.sub(lambda m: f"{m['sep']}{m['key']}={MASK}" if SECRET_KEYS.fullmatch(m["key"]) and m["val"] else m[0], text)
    return _ASSIGN.sub(lambda m: f"{m['key']}{m['op']}{m['q']}{MASK}", text)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (str, mapping, list, tuple, other) with every credential masked.

    Values under a key that names a credential (``password``, ``token``, ``api_key`` …) are masked
    whole; strings are passed through :func:`redact_text`.
    """
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: (MASK if isinstance(k, str) and SECRET_KEYS.fullmatch(k) and v not in (None, "") and not isinstance(v, (dict, list, bool))
                    else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that masks credentials in every record's message (args are formatted first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact_text(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True
