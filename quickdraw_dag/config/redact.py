"""Keep secrets out of logs, manifests and MLflow params.

A download base URL or a tracking URI may carry credentials
(`https://user:token@host/`, `postgresql://user:password@db/`, a signed
URL's `?X-Goog-Signature=`); they are replaced by `***` wherever the
project writes such a value down.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&](?:[A-Za-z0-9_-]*(?:token|key|secret|password|passwd|signature|credential|sig)[A-Za-z0-9_-]*))=(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with URL credentials and secret-looking query values replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('name')}=***", text)
