"""Access tokens from the local tokenbroker daemon, over its socket (docs/PROTOCOL.md).

    import tokenbroker
    token = tokenbroker.get_token("me", scopes=("read",), min_ttl=60)
    headers = {"Authorization": f"{token.token_type} {token.access_token}"}

Standard library only. The daemon decides per app: a Python program is identified by its
interpreter's executable (for example /usr/bin/python3.11), so an allow rule for that interpreter
covers every script it runs (docs/INTEGRATIONS.md).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional, Tuple, Type

__all__ = [
    "PROTOCOL",
    "MAX_LINE",
    "Token",
    "Client",
    "get_token",
    "default_socket_path",
    "TokenbrokerError",
    "NotRunning",
    "ProtocolError",
    "NoSuchAccount",
    "NoSuchProvider",
    "NeedsSignIn",
    "Denied",
    "InvalidArgument",
    "InvalidCredentials",
    "ServerError",
    "NetworkError",
    "AlreadyExists",
    "ConfigError",
    "StoreError",
    "Busy",
    "InternalError",
    "RateLimited",
]

#: The protocol version this client speaks; any daemon of the same major answers it.
PROTOCOL = "1.0"
#: The longest line either side may send, newline included (the daemon's limit).
MAX_LINE = 64 * 1024
#: The system daemon's socket (tokenbrokerd --system).
SYSTEM_SOCKET = "/run/tokenbroker/socket"

SEND_TIMEOUT = 30.0
REPLY_TIMEOUT = 120.0


class TokenbrokerError(Exception):
    """A request failed. `kind` is the daemon's error kind (`data.kind`), `exit_code` the
    tokenbroker CLI's exit code for the same failure; str() is the daemon's message."""

    kind: str = "internal"
    exit_code: int = 1

    def __init__(self, message: str, kind: Optional[str] = None, code: Optional[int] = None):
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        #: The JSON-RPC error code, when the daemon sent one.
        self.code = code


class NotRunning(TokenbrokerError):
    """No daemon at the socket, or the socket could not be found."""

    kind, exit_code = "not_running", 6


class ProtocolError(TokenbrokerError):
    """The daemon broke the protocol, speaks an incompatible version, or closed the connection."""

    kind, exit_code = "protocol", 6


class NoSuchAccount(TokenbrokerError):
    kind, exit_code = "no_such_account", 8


class NoSuchProvider(TokenbrokerError):
    kind, exit_code = "no_such_provider", 8


class NeedsSignIn(TokenbrokerError):
    """The account has no usable credentials: `tokenbroker login ACCOUNT`."""

    kind, exit_code = "needs_sign_in", 3


class Denied(TokenbrokerError):
    """The policy, or the user, refused this app: the message says how to allow it."""

    kind, exit_code = "denied", 4


class InvalidArgument(TokenbrokerError):
    kind, exit_code = "invalid_argument", 2


class InvalidCredentials(TokenbrokerError):
    kind, exit_code = "invalid_credentials", 7


class ServerError(TokenbrokerError):
    kind, exit_code = "server_error", 5


class NetworkError(TokenbrokerError):
    kind, exit_code = "network_error", 5


class AlreadyExists(TokenbrokerError):
    kind, exit_code = "already_exists", 2


class ConfigError(TokenbrokerError):
    kind, exit_code = "config", 1


class StoreError(TokenbrokerError):
    kind, exit_code = "store", 1


class Busy(TokenbrokerError):
    """A connection limit of the daemon: try again shortly."""

    kind, exit_code = "busy", 6


class InternalError(TokenbrokerError):
    kind, exit_code = "internal", 1


class RateLimited(TokenbrokerError):
    """This app asked too often; the message says when to try again."""

    kind, exit_code = "rate_limited", 9


_BY_KIND: Dict[str, Type[TokenbrokerError]] = {
    c.kind: c
    for c in (
        NoSuchAccount,
        NoSuchProvider,
        NeedsSignIn,
        Denied,
        InvalidArgument,
        InvalidCredentials,
        ServerError,
        NetworkError,
        AlreadyExists,
        ConfigError,
        StoreError,
        Busy,
        ProtocolError,
        InternalError,
        RateLimited,
    )
}


@dataclass(frozen=True)
class Token:
    """An access token. Its repr leaves the token out, so that logging the object is safe."""

    access_token: str = field(repr=False)
    token_type: str
    #: Unix seconds.
    expires_at: int
    scopes: Tuple[str, ...]


def default_socket_path(system: bool = False) -> str:
    """`$TOKENBROKER_SOCKET`, else `$XDG_RUNTIME_DIR/tokenbroker/socket`; the system daemon's
    with `system=True`."""
    if system:
        return SYSTEM_SOCKET
    path = os.environ.get("TOKENBROKER_SOCKET")
    if path:
        return path
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "tokenbroker", "socket")
    raise NotRunning("cannot find the daemon's socket: neither TOKENBROKER_SOCKET nor XDG_RUNTIME_DIR is set")


class Client:
    """One connection to the daemon. Use it as a context manager, or call close()."""

    def __init__(self, socket_path: Optional[str] = None, *, system: bool = False, client: str = "tokenbroker-python"):
        self.path = socket_path or default_socket_path(system)
        self._buf = b""
        self._id = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(SEND_TIMEOUT)
        try:
            self._sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            self._sock.close()
            raise NotRunning(
                f"the tokenbroker daemon is not running (no socket at {self.path}): start it with "
                "`systemctl --user start tokenbrokerd` or run `tokenbrokerd`"
            ) from e
        except OSError as e:
            self._sock.close()
            raise NotRunning(f"cannot connect to the daemon at {self.path}: {e}") from e
        try:
            hello = self._call("Hello", {"protocol": PROTOCOL, "client": client})
            theirs = str(hello.get("protocol", ""))
            if theirs.split(".")[0] != PROTOCOL.split(".")[0]:
                raise ProtocolError(f"the daemon speaks protocol {theirs}, this client {PROTOCOL}: upgrade the older one")
            self.daemon_version: str = str(hello.get("daemon_version", ""))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def get_token(self, account: str, scopes: Iterable[str] = (), min_ttl: int = 0) -> Token:
        """An access token for `account` with at least `min_ttl` seconds left, for `scopes`
        (empty: the account's)."""
        if isinstance(scopes, (str, bytes)):
            raise TypeError("scopes must be a list of strings, not one string")
        scopes = list(scopes)
        if not isinstance(account, str) or not all(isinstance(s, str) for s in scopes):
            raise TypeError("account and scopes must be strings")
        if isinstance(min_ttl, bool) or not isinstance(min_ttl, int):
            raise TypeError("min_ttl must be an int")
        r = self._call("GetToken", {"account": account, "scopes": scopes, "min_ttl": min_ttl})
        try:
            return Token(
                access_token=str(r["access_token"]),
                token_type=str(r["token_type"]),
                expires_at=int(r["expires_at"]),
                scopes=tuple(str(s) for s in r["scopes"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"the daemon's GetToken reply is not a token: {e}") from None

    def _call(self, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        self._id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}, separators=(",", ":")).encode() + b"\n"
        if len(line) > MAX_LINE:
            raise InvalidArgument(f"the request is longer than {MAX_LINE} bytes")
        try:
            self._sock.settimeout(SEND_TIMEOUT)
            self._sock.sendall(line)
        except OSError as e:
            raise ProtocolError(f"cannot send to the daemon: {e}") from e
        while True:
            reply = self._read_reply()
            if reply.get("id") == self._id or (reply.get("id") is None and "error" in reply):
                break
            # A notification (no id) or a reply to no request of ours: not for this call.
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            data = err.get("data") if isinstance(err.get("data"), dict) else {}
            kind = str(data.get("kind", "internal"))
            cls = _BY_KIND.get(kind, TokenbrokerError)
            raise cls(str(err.get("message", "the daemon gave no message")), kind=kind, code=err.get("code"))
        result = reply.get("result")
        if not isinstance(result, dict):
            raise ProtocolError("the daemon's reply has no result")
        return result

    def _read_reply(self) -> Dict[str, Any]:
        self._sock.settimeout(REPLY_TIMEOUT)
        while b"\n" not in self._buf:
            if len(self._buf) >= MAX_LINE:
                raise ProtocolError(f"the daemon sent a line longer than {MAX_LINE} bytes")
            try:
                chunk = self._sock.recv(MAX_LINE)
            except socket.timeout:
                raise ProtocolError(f"no reply from the daemon in {REPLY_TIMEOUT:.0f} s") from None
            except OSError as e:
                raise ProtocolError(f"the connection to the daemon failed: {e}") from e
            if not chunk:
                raise ProtocolError("the daemon closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        if len(line) + 1 > MAX_LINE:
            raise ProtocolError(f"the daemon sent a line longer than {MAX_LINE} bytes")
        try:
            reply = json.loads(line)
        except ValueError as e:
            raise ProtocolError(f"the daemon's reply is not JSON: {e}") from None
        if not isinstance(reply, dict):
            raise ProtocolError("the daemon's reply is not a JSON-RPC object")
        return reply


def get_token(account: str, scopes: Iterable[str] = (), min_ttl: int = 0, *, socket_path: Optional[str] = None, system: bool = False) -> Token:
    """An access token for `account`, over a connection opened and closed for this call."""
    with Client(socket_path, system=system) as c:
        return c.get_token(account, scopes, min_ttl)
