"""Camera URLs without their secrets, wherever one is shown (logs, `streamd check`)."""

from __future__ import annotations

import re

# Query keys whose values are secrets in camera URLs (many cameras take credentials there).
SECRET_QUERY_KEYS = (
    "pwd|pass|passwd|password|token|key|auth|secret|apikey|api_key|access_token|sig|signature|credentials?"
)
_SECRET_QUERY = re.compile(rf"(?i)([?&;](?:{SECRET_QUERY_KEYS})=)(.*?)(?=[&;][A-Za-z0-9_.\-]+=|$)", re.DOTALL)


def redact_uri(uri: str) -> str:
    """Hide credentials wherever a URI is shown.

    Everything up to the *last* ``@`` is the user info (a password may hold ``@ / : ? #``, so no
    earlier delimiter can be trusted): ``rtsp://admin:pa@s/s@host/x`` -> ``rtsp://***@host/x``. The
    value of a password-like query key is hidden up to the next ``&name=``, whatever it holds:
    ``?user=admin&pwd=***``. When in doubt this hides too much, never too little."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    at = rest.rfind("@")
    if at >= 0:
        rest = "***@" + rest[at + 1 :]
    return f"{scheme}://{_SECRET_QUERY.sub(lambda m: m.group(1) + '***', rest)}"
