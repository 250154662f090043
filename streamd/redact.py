"""Camera URLs parsed once, and shown without their secrets (logs, ``streamd check``, pages).

Users do not percent-encode passwords (``rtsp://admin:s3cret/x@host/x``), so no standard URL
parser can be trusted with a camera URL: ``urllib.parse`` reads ``s3cret`` as a port there and
raises with the password in its message. :func:`parse_camera_url` applies one rule everywhere:
the user info runs up to the *last* ``@`` of the authority-and-path, whatever it holds.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

# A query key "looks like a credential" when it holds one of these (case-insensitive): vendors
# use many names (``pwd``, ``loginpas``, ``PassWord``, ``usr_pass``, ``auth_key``, ``X-Amz-Signature``),
# so the test is a substring, and hiding a harmless value is the price of never showing a secret.
_CREDENTIAL_HINTS = re.compile(r"(?i)pw|pas|secret|token|key|auth|sig|cred|session|sid|hash|nonce|otp|code")
# ``?key=value``: a value runs to the next ``&name=`` (a password may hold ``&``), whatever it holds.
_QUERY_ITEM = re.compile(r"([?&;])([^=&;?#/]*)=(.*?)(?=[&;][A-Za-z0-9_.\-]+=|$)", re.DOTALL)


class CameraUrlError(ValueError):
    """A camera URL that cannot be used; its message never holds the URL's secrets."""


@dataclass(frozen=True)
class CameraUrl:
    """A camera URL split the one way streamd splits it (see the module's docstring)."""

    scheme: str
    username: str  # percent-decoded
    password: str  # percent-decoded
    host: str  # without the brackets of an IPv6 literal
    port: int | None
    target: str  # path, query and fragment as written ("/" when empty)

    def default_port(self, port: int) -> int:
        return self.port if self.port is not None else port

    @property
    def netloc(self) -> str:
        """``host[:port]`` for a request line: no credentials, IPv6 bracketed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host + (f":{self.port}" if self.port is not None else "")

    @property
    def without_credentials(self) -> str:
        """The URL to ask for: credentials go in an Authorization header, not in the request line."""
        return f"{self.scheme}://{self.netloc}{self.target}"


def _split(uri: str) -> tuple[str, str | None, str]:
    """(scheme, user info or None, the rest); the user info ends at the last ``@``."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "", None, uri
    at = rest.rfind("@")
    if at < 0:
        return scheme, None, rest
    return scheme, rest[:at], rest[at + 1 :]


def parse_camera_url(uri: str) -> CameraUrl:
    """Split a ``scheme://[user[:password]@]host[:port][/path][?query]`` URL; raise
    :class:`CameraUrlError` (naming what is wrong, never the secret) when it cannot be used."""
    scheme, userinfo, rest = _split(uri)
    if not scheme:
        raise CameraUrlError("not a URL (scheme://host/...)")
    user, _, password = (userinfo or "").partition(":")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:]
    if target.startswith(("?", "#")):
        target = "/" + target
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise CameraUrlError("an IPv6 host is not closed with ']'")
        host, after = authority[1:end], authority[end + 1 :]
        if after and not after.startswith(":"):
            raise CameraUrlError("unexpected text after the IPv6 host")
        port_text = after[1:]
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise CameraUrlError("the host in [...] is not an IPv6 address") from None
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
        if ":" in host or "[" in host or "]" in host:
            raise CameraUrlError("an IPv6 host must be written in brackets: [::1]")
    if not host:
        raise CameraUrlError("no host")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise CameraUrlError(
                "the port must be a number from 1 to 65535 (percent-encode a '/' or '@' in a password)"
            )
        port = int(port_text)
    return CameraUrl(scheme.lower(), unquote(user), unquote(password), host, port, target or "/")


def _is_secret_key(key: str) -> bool:
    return bool(_CREDENTIAL_HINTS.search(unquote(key)))


def redact_uri(uri: str) -> str:
    """Hide credentials wherever a URI is shown.

    Everything up to the *last* ``@`` is the user info: ``rtsp://admin:pa@s/s@host/x`` ->
    ``rtsp://***@host/x``. The value of every query key that looks like a credential is hidden
    (``?loginuse=admin&loginpas=***``). When in doubt this hides too much, never too little."""
    scheme, userinfo, rest = _split(uri)
    if not scheme:
        return uri
    if userinfo is not None:
        rest = "***@" + rest
    return f"{scheme}://" + _QUERY_ITEM.sub(
        lambda m: m.group(0) if not _is_secret_key(m.group(2)) else f"{m.group(1)}{m.group(2)}=***", rest
    )


def uri_secrets(uri: str) -> set[str]:
    """What :func:`redact_uri` hides, as written and percent-decoded: the password (the whole
    user info too, where it has no ``:``) and every credential-looking query value. The log
    processor replaces each of these in every line (``streamd.logging``)."""
    scheme, userinfo, rest = _split(uri)
    found: set[str] = set()
    if not scheme:
        return found
    if userinfo:
        user, sep, password = userinfo.partition(":")
        found.update({password, unquote(password)} if sep else {user, unquote(user)})
    for match in _QUERY_ITEM.finditer(rest):
        if _is_secret_key(match.group(2)) and match.group(3):
            found.update({match.group(3), unquote(match.group(3))})
    return {s for s in found if s}
