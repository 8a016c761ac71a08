"""Bluesky documents over 0MQ, as data only.

bluesky's ``Publisher`` and ``RemoteDispatcher`` default to ``pickle``: whoever can publish to the
proxy can then run code inside every subscriber. Here documents travel as **msgpack** (maps, lists,
strings, numbers, and NumPy arrays of plain numeric dtypes in the layout ``msgpack_numpy`` writes),
and :func:`unpack` rebuilds nothing but those: no pickle, no object arrays, no extension types.

A beamline profile publishes for the agent with one line (``msgpack`` and ``msgpack_numpy`` come with
bluesky; ``msgpack_numpy.encode`` writes numeric arrays in the layout :func:`unpack` reads)::

    RE.subscribe(Publisher("127.0.0.1:5577", serializer=xanes_agent.agent.wire.pack))
    # or, without xanes-agent installed there:
    RE.subscribe(Publisher("127.0.0.1:5577",
                           serializer=functools.partial(msgpack.packb, default=msgpack_numpy.encode)))

:class:`DocumentSubscriber` is the receiving end ``serve`` uses instead of ``RemoteDispatcher``: a
plain SUB socket whose every failure (a message that does not split, an unknown document name, a
payload that is not data-only msgpack, a pickle) is counted and logged, never raised; it also logs
when its connection to the proxy drops and comes back, since what was published meanwhile is lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

log = logging.getLogger(__name__)

#: The document names bluesky publishes (event-model's ``DocumentNames``).
DOCUMENT_NAMES = frozenset({"start", "descriptor", "event", "event_page", "stop", "resource", "datum",
                            "datum_page", "stream_resource", "stream_datum"})
#: Largest message accepted (bytes): a document larger than this is skipped before decoding.
MAX_MESSAGE_BYTES = 64 * 2**20
_NUMERIC_KINDS = frozenset("biufc")  # bool, int, uint, float, complex: arrays of these only


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _NUMERIC_KINDS:
            return obj.tolist()
        return {b"nd": True, b"type": obj.dtype.str, b"kind": b"", b"shape": list(obj.shape),
                b"data": np.ascontiguousarray(obj).tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__} in a document")


def pack(doc: dict) -> bytes:
    """Serialize a document as msgpack (NumPy arrays in msgpack_numpy's layout)."""
    return msgpack.packb(doc, default=_encode, use_bin_type=True)


def _decode(obj: dict) -> Any:
    # msgpack_numpy's array layout; its object ('O') and structured ('V') kinds carry pickles: refused
    if obj.get(b"nd") is True:
        dtype_str, kind, shape, data = obj.get(b"type"), obj.get(b"kind"), obj.get(b"shape"), obj.get(b"data")
        if kind not in (b"", None) or not isinstance(dtype_str, (str, bytes)) or not isinstance(data, bytes):
            raise ValueError("array of a non-numeric kind")
        try:
            dtype = np.dtype(dtype_str if isinstance(dtype_str, str) else dtype_str.decode())
        except TypeError as exc:
            raise ValueError(f"invalid dtype {dtype_str!r}") from exc
        if dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"array of dtype {dtype} refused")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError("array without a valid shape")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise ValueError("array data does not match its shape")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if obj.get(b"nd") is False:  # a NumPy scalar
        dtype_str, data = obj.get(b"type"), obj.get(b"data")
        try:
            dtype = np.dtype(dtype_str if isinstance(dtype_str, str) else bytes(dtype_str or b"").decode())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid dtype {dtype_str!r}") from exc
        if dtype.kind not in _NUMERIC_KINDS or not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise ValueError("invalid NumPy scalar")
        return np.frombuffer(data, dtype=dtype)[0].item()
    if any(isinstance(k, bytes) for k in obj):
        raise ValueError("map with binary keys (not a document)")
    return obj


def unpack(data: bytes) -> dict:
    """Decode one document; ``ValueError`` for anything that is not a data-only msgpack map."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        doc = msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=True,
                              ext_hook=_no_ext)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises ExtraData, FormatError, StackError, ...
        raise ValueError(f"not msgpack: {type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(doc, dict):
        raise ValueError(f"a document must be a map, got {type(doc).__name__}")
    return doc


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} refused")


@dataclass
class WireStats:
    """What a :class:`DocumentSubscriber` received: documents delivered and messages skipped, by reason."""

    delivered: int = 0
    skipped: Counter = field(default_factory=Counter)
    disconnects: int = 0

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common()) or "none"
        return f"{self.delivered} documents received; skipped: {skipped}; proxy disconnects: {self.disconnects}"


class DocumentSubscriber:
    """Receive ``(name, doc)`` from a bluesky 0MQ proxy's output and pass them to ``callbacks``.

    ``prefix``: only messages whose first part is this are taken (b"" takes all); messages of
    ``ignore_prefixes`` (e.g. the agent's own, echoed back by the proxy) are dropped uncounted.
    :meth:`run` polls until :meth:`stop` (thread- and signal-safe) is called. A callback that raises
    is logged and counted; the subscriber keeps going.
    """

    def __init__(self, address: str, prefix: bytes = b"", ignore_prefixes: tuple[bytes, ...] = (),
                 no_proxy_warning_s: float = 5.0) -> None:
        import zmq

        self.address = address
        self.prefix = prefix
        self.ignore_prefixes = ignore_prefixes
        self.stats = WireStats()
        self._callbacks: list[Callable[[str, dict], Any]] = []
        self._stop = False
        self._warned: Counter = Counter()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # larger messages never reach us
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._sock.connect(address)
        self._connected = False
        self._started = time.monotonic()
        self._no_proxy_warning_s = no_proxy_warning_s
        self._warned_no_proxy = False

    def subscribe(self, callback: Callable[[str, dict], Any]) -> None:
        self._callbacks.append(callback)

    def stop(self) -> None:
        self._stop = True

    def _skip(self, why: str, detail: str = "") -> None:
        self.stats.skipped[why] += 1
        n = self._warned[why] = self._warned[why] + 1
        if n <= 3 or n in (10, 100, 1000) or n % 10000 == 0:
            log.warning("skipped a 0MQ message (%s%s); %d so far", why, f": {detail}" if detail else "", n)

    def handle(self, message: bytes) -> None:
        """Decode one raw message and deliver it (public for tests and replays of captured traffic)."""
        parts = message.split(b" ", 2)
        if len(parts) != 3:
            return self._skip("not 'prefix name payload'")
        prefix, name_b, payload = parts
        if prefix in self.ignore_prefixes:
            return None
        if self.prefix and prefix != self.prefix:
            return None
        name = name_b.decode("ascii", errors="replace")
        if name not in DOCUMENT_NAMES:
            return self._skip("unknown document name", repr(name[:40]))
        try:
            doc = unpack(payload)
        except ValueError as exc:
            return self._skip("not a data-only msgpack document (pickle or other)", str(exc)[:120])
        self.stats.delivered += 1
        for cb in self._callbacks:
            try:
                cb(name, doc)
            except Exception:  # noqa: BLE001 - no document may stop a served agent
                self.stats.skipped["callback error"] += 1
                log.exception("a %r document raised in %r; continuing", name, cb)
        return None

    def _watch_connection(self) -> None:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                if self.stats.disconnects:
                    log.warning("reconnected to the 0MQ proxy at %s; documents published while it was away "
                                "are lost (a run whose start was missed is skipped)", self.address)
                self._connected = True
            elif event == zmq.EVENT_DISCONNECTED and self._connected:
                self._connected = False
                self.stats.disconnects += 1
                log.warning("lost the 0MQ proxy at %s (restarted or stopped?); reconnecting", self.address)
        if (not self._connected and not self._warned_no_proxy and not self.stats.disconnects
                and time.monotonic() - self._started > self._no_proxy_warning_s):
            self._warned_no_proxy = True
            log.warning("no 0MQ proxy answers at %s after %.0f s; still trying (is bluesky-0MQ-proxy running?)",
                        self.address, self._no_proxy_warning_s)

    def run(self, poll_ms: int = 100) -> None:
        """Receive until :meth:`stop`; then close the sockets."""
        import zmq

        try:
            while not self._stop:
                self._watch_connection()
                if self._sock.poll(poll_ms, zmq.POLLIN):
                    while not self._stop:
                        try:
                            msg = self._sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.handle(msg)
        finally:
            self.close()

    @property
    def connected(self) -> bool:
        self._watch_connection()
        return self._connected

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock.close(linger=0)
            self._ctx.term()
