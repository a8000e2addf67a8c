"""Which env values are secret, and the one way stackshift shows a value: masked when in doubt.

A value is secret when its key's name says so, when the operator marked the key, or when the value itself
looks like a credential. The rules err on the side of hiding: a hidden harmless value costs a look at the
file; a shown password cannot be taken back. `shown` is the only function that turns an env value into text
for a person (CLI report, `--json`, the flow's markdown and table artifacts, error messages); nothing else
prints a value.

The rules, each with examples:

- the key's name holds PASS, PWD, SECRET, KEY, TOKEN, CREDENTIAL, PRIVATE, DSN, AUTH, SALT, CERT, PEM, BASE64,
  JSON, CONNECTION_STRING, CONN_STR or ACCESS: `DB_PASSWORD`, `GOOGLE_STORAGE_SERVICE_ACCOUNT_JSON_BASE64`;
- a URL with any credentials part: `redis://:pw@redis:6379/1`, `postgresql://user:pw@db/x`, `https://token@host`;
- a connection string or query with a credential field: `…;AccountKey=…`, `Password=…`, `pwd=…`,
  `SharedAccessSignature=…`, `?sig=…`;
- a PEM block or a private key: `-----BEGIN …`, `… PRIVATE KEY …`;
- JSON whose field names or values are secret by these rules: `{"type": "service_account", "private_key": …}`;
- base64 that decodes to text that is secret by these rules: a base64 service-account JSON;
- a long random-looking token: 20+ characters of `A-Za-z0-9+/=_-.~` mixing letters and digits, 3 bits of entropy
  per character (2.4 for hex).
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterable

MASK = "(secret)"
UNSET = "(unset)"

SECRET_NAME = re.compile(
    r"PASS|PWD|SECRET|KEY|TOKEN|CREDENTIAL|PRIVATE|DSN|AUTH|SALT|CERT|PEM|BASE64|JSON|CONNECTION_?STRING"
    r"|CONN_?STR|ACCESS", re.I)
_URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s?#@]*@")
_CREDENTIAL_FIELD = re.compile(
    r"(?:^|[;?&,\s\-])\s*(?:account_?key|password|passwd|pass|pwd|shared_?access_?(?:signature|key)|sig|secret"
    r"|client_?secret|access_?token|token|api_?key|apikey)\s*=", re.I)
_KEY_MATERIAL = re.compile(r"-----BEGIN |PRIVATE KEY|private_key", re.I)
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-.~]{20,}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_SEGMENT_SEPARATORS = re.compile(r"[._\-/~]+")
_MAX_DEPTH = 3


def is_secret_name(key: str, extra_keys: Iterable[str] = ()) -> bool:
    """True when the key's name says it holds a secret, or the operator listed it."""
    return key in extra_keys or bool(SECRET_NAME.search(key))


def is_secret_value(value: str | None, _depth: int = 0) -> bool:
    """True when the value itself looks like a credential (see the module's table)."""
    if not value or _depth > _MAX_DEPTH:
        return False
    if _URL_CREDENTIALS.search(value) or _CREDENTIAL_FIELD.search(value) or _KEY_MATERIAL.search(value):
        return True
    stripped = value.strip()
    if stripped[:1] in ("{", "[") and _json_is_secret(stripped, _depth):
        return True
    return _base64_is_secret(stripped, _depth) or looks_random(stripped)


def is_secret(key: str, *values: str | None, extra_keys: Iterable[str] = ()) -> bool:
    """True when `key`'s values must never be shown: by its name, by the operator's list, or by any of `values`."""
    return is_secret_name(key, extra_keys) or any(is_secret_value(v) for v in values)


def shown(value: str | None, secret: bool) -> str:
    """How a value appears to a person: `(unset)`, `(secret)`, or the value itself."""
    if value is None:
        return UNSET
    return MASK if secret else value


def secret_values(values: dict[str, str | None], extra_keys: Iterable[str] = ()) -> list[str]:
    """Every non-empty value of `values` that is secret, longest first (for scrubbing other programs' messages)."""
    found = {v for k, v in values.items() if v and is_secret(k, v, extra_keys=extra_keys)}
    return sorted(found, key=len, reverse=True)


def entropy(text: str) -> float:
    """Shannon entropy of `text`, in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


def looks_random(value: str) -> bool:
    """True for a long token that mixes letters and digits at random (not words, a path or a version)."""
    if not _TOKEN.fullmatch(value):
        return False
    if not (any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)):
        return False
    segments = [s for s in _SEGMENT_SEPARATORS.split(value) if s]
    if all(s.isalpha() or s.isdigit() for s in segments):
        return False  # words and numbers joined by separators: a path, a region, a version
    return entropy(value) >= (2.4 if _HEX.fullmatch(value) else 3.0)


def _json_is_secret(text: str, depth: int) -> bool:
    try:
        data = json.loads(text)
    except ValueError:
        return bool(re.search(r'"[^"]*(?:' + SECRET_NAME.pattern + r')[^"]*"\s*:', text, re.I))
    return _data_is_secret(data, depth)


def _data_is_secret(data, depth: int) -> bool:
    if isinstance(data, dict):
        return any(is_secret_name(str(k)) or _data_is_secret(v, depth) for k, v in data.items())
    if isinstance(data, list):
        return any(_data_is_secret(v, depth) for v in data)
    return isinstance(data, str) and is_secret_value(data, depth + 1)


def _base64_is_secret(text: str, depth: int) -> bool:
    compact = re.sub(r"\s+", "", text)
    if not _BASE64.fullmatch(compact):
        return False
    padded = compact.replace("-", "+").replace("_", "/").rstrip("=")
    padded += "=" * (-len(padded) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return is_secret_value(decoded, depth + 1) or bool(SECRET_NAME.search(decoded) and decoded.lstrip()[:1] in "{[")
