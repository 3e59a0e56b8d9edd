"""How results and cache values are stored: JSON when that round-trips, else a signed pickle.

JSON is preferred because any tool can read it. A value JSON would change (a tuple becomes a
list, an int key becomes a string) is pickled instead, so what comes back equals what went
in. Pickles larger than the limit, and values that cannot be pickled, are not stored: the
note says why, and a resumed run executes that task again.

Unpickling runs code the pickle names, so a pickle is loaded only with proof that this
installation wrote it: every stored pickle carries an HMAC-SHA256 under a key kept outside
the database, in a file only its owner can read (``$TASKLOOM_STORE_KEY``, else ``store.key``
in the user's data folder; created on first use, mode 0600). A pickle without a valid HMAC
(another installation's, an older taskloom's, a crafted or damaged one) is never loaded: its
task counts as not recorded and runs again on resume. Read-only history never unpickles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import secrets
import stat
import threading
from pathlib import Path
from typing import Any

from taskloom_std.stores.errors import StoreError

#: Default largest pickled result kept (bytes).
RESULT_LIMIT = 1 << 20

#: Environment variable naming the key file (tests point it at a temporary folder).
KEY_ENV = "TASKLOOM_STORE_KEY"

#: What read-only history shows instead of a pickled value.
NOT_LOADED = "<pickled value: not loaded by read-only history>"

_SIGNED = b"TLS1"
_MAC_SIZE = hashlib.sha256().digest_size
_KEY_SIZE = 32
_SCALARS = (str, int, float, bool)


class UntrustedPickle(StoreError):
    """A stored pickle has no valid signature of this installation; it was not loaded."""


def key_path() -> Path:
    """The key file: ``$TASKLOOM_STORE_KEY``, else ``store.key`` in the user's data folder."""
    override = os.environ.get(KEY_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("taskloom", appauthor=False)) / "store.key"


class Signer:
    """Signs and checks pickles with the installation's key (read or created on first use)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path if self._path is not None else key_path()

    def key(self, create: bool) -> bytes | None:
        with self._lock:
            if self._key is None:
                self._key = _read_key(self.path, create)
            return self._key

    def sign(self, blob: bytes) -> bytes:
        key = self.key(create=True)
        assert key is not None
        return _SIGNED + hmac.new(key, blob, hashlib.sha256).digest() + blob

    def verify(self, data: bytes) -> bytes:
        """The pickle inside ``data`` when its HMAC is this installation's; else raise."""
        if not isinstance(data, bytes) or not data.startswith(_SIGNED):
            raise UntrustedPickle("the pickle carries no signature (an older taskloom's, or "
                                  "crafted)")
        key = self.key(create=False)
        if key is None:
            raise UntrustedPickle(f"there is no key file {self.path} to check its signature")
        mac, blob = data[len(_SIGNED):len(_SIGNED) + _MAC_SIZE], data[len(_SIGNED) + _MAC_SIZE:]
        if not hmac.compare_digest(mac, hmac.new(key, blob, hashlib.sha256).digest()):
            raise UntrustedPickle("its signature does not match this installation's key "
                                  "(another installation's, damaged or crafted)")
        return blob


def _read_key(path: Path, create: bool) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        if not create:
            return None
        return _create_key(path)
    except OSError as exc:
        raise StoreError(f"cannot read the store key {path}: {exc}") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if os.name == "posix" and (
            info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or info.st_uid != os.getuid()
        ):
            raise StoreError(
                f"the store key {path} must belong to you and be readable by you only "
                f"(chmod 600 {path}); pickled results are not trusted until it is"
            )
        key = f.read()
    if len(key) != _KEY_SIZE:
        raise StoreError(f"the store key {path} is damaged ({len(key)} bytes, not "
                         f"{_KEY_SIZE}); move it away to start a new one")
    return key


def _create_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(_KEY_SIZE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            # A link never replaces: of two processes creating the key at once, one wins and
            # the other reads the winner's key.
            os.link(tmp, path)
        except FileExistsError:
            found = _read_key(path, create=False)
            assert found is not None
            return found
    finally:
        tmp.unlink(missing_ok=True)
    return key


def encode(value: Any, limit: int = RESULT_LIMIT,
           signer: Signer | None = None) -> tuple[str, Any, str | None]:
    """``(kind, data, note)``: kind ``none``, ``json``, ``pickle``, or ``missing`` (not stored)."""
    if value is None:
        return "none", None, None
    if type(value) in _SCALARS:
        # A float NaN or infinity is valid in Python's JSON dialect and round-trips.
        return "json", json.dumps(value), None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is not None:
        try:
            same = json.loads(text) == value
        except Exception:
            same = False
        if same:
            return "json", text, None
    try:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return "missing", None, (
            f"result of type {type(value).__name__} is neither JSON nor picklable "
            f"({type(exc).__name__}: {exc}); not stored"
        )
    if len(blob) > limit:
        return "missing", None, (
            f"pickled result of type {type(value).__name__} is {len(blob):,} bytes, over the "
            f"store's result_limit of {limit:,}; not stored"
        )
    note = (f"pickled ({len(blob):,} bytes): a {type(value).__name__} does not survive JSON "
            "unchanged")
    return "pickle", (signer or Signer()).sign(blob), note


def decode(kind: str, data: Any, signer: Signer | None = None, load_pickles: bool = True) -> Any:
    """The value :func:`encode` stored; ``missing`` has no value (check before calling).

    A pickle is loaded only when ``load_pickles`` and its signature checks out
    (:class:`UntrustedPickle` otherwise); without ``load_pickles`` it is :data:`NOT_LOADED`.
    Damaged JSON raises ``ValueError``.
    """
    if kind == "none":
        return None
    if kind == "json":
        if isinstance(data, bytes):
            data = data.decode()
        if not isinstance(data, str):
            raise ValueError(f"a JSON value stored as {type(data).__name__}")
        return json.loads(data)
    if kind == "pickle":
        if not load_pickles:
            return NOT_LOADED
        blob = (signer or Signer()).verify(data)
        return pickle.loads(blob)
    raise ValueError(f"no stored value (kind {kind!r})")
