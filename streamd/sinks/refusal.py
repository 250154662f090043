"""Which connection failures retrying will not fix (refused credentials, a failed certificate
check), told apart by the CONNACK reason code and the TLS error type, in a sentence for the log."""

from __future__ import annotations

import re
import ssl

import aiomqtt
from aiomqtt.exceptions import MqttCodeError, MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

# CONNACK reason codes that retrying will not fix: 3.1.1 (4 bad user name or password, 5 not
# authorised) and 5 (134, 135, 138 banned, 140 bad authentication method).
REFUSED_CODES = frozenset({4, 5, 134, 135, 138, 140})
PROTOCOL_CODES = frozenset({1, 132})  # unacceptable / unsupported protocol version


def connack_code(exc: BaseException) -> int | None:
    if not isinstance(exc, MqttCodeError):
        return None
    rc = exc.rc
    return int(rc.value) if isinstance(rc, ReasonCode) else rc


def describe_refusal(exc: BaseException) -> str | None:
    """A plain sentence for errors that retrying will not fix, None for the ones it may."""
    code = connack_code(exc) if isinstance(exc, MqttConnectError) else None
    if code in REFUSED_CODES:
        reason = re.sub(r"^\[code:\d+\]\s*", "", str(exc))
        return f"the broker refused the connection: {reason} (check mqtt.username and mqtt.password_file)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate check failed: {exc} (check mqtt.tls.ca, or the broker's certificate)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc} (check mqtt.tls.* and that the port speaks TLS)"
    text = str(exc)
    # aiomqtt wraps connection errors in MqttError with the original's text only.
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS certificate check failed: {text} (check mqtt.tls.ca, or the broker's certificate)"
    if "SSL" in text and isinstance(exc, aiomqtt.MqttError):
        return f"TLS handshake failed: {text} (check mqtt.tls.* and that the port speaks TLS)"
    return None


def refused_protocol(exc: BaseException) -> bool:
    """The broker answered CONNECT with 'unsupported protocol version' (an MQTT 3.1.1 broker)."""
    return isinstance(exc, MqttConnectError) and connack_code(exc) in PROTOCOL_CODES


class MqttUnavailable(Exception):
    """The broker refused us at start (credentials, TLS): exit 69, it will not fix itself."""
