"""Past runs from a Tiled server (where facilities keep them), as Bluesky documents.

``xanes-agent replay http://HOST:PORT[/path] [--uid UID ...] [--search KEY=VALUE ...]`` reads runs
with the Tiled client (``pip install 'xanes-agent[tiled]'``) and rebuilds, per run, the documents
the agent consumes: the start document, one descriptor per stream (from the stream's metadata:
``data_keys``, ``configuration``, ``hints``, ``object_classes``), one ``event_page`` per stream with
every row (``seq_num``, ``time``, each data key and its ``ts_<key>`` timestamps), and the stop
document when the run has one. This is the layout bluesky's ``TiledWriter`` writes (BlueskyRun
spec 3.0: streams as composite nodes of arrays, directly under the run or under ``streams``).

Tiled speaks JSON, msgpack and Arrow/NumPy buffers: nothing read from the server is unpickled or
executed; values that are not numbers or strings are refused by the agent's own checks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20


class CatalogError(RuntimeError):
    """The Tiled server or a run could not be read; the message says which and why."""


def is_tiled_uri(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def connect(uri: str, api_key: str | None = None) -> Any:
    """A Tiled client node at ``uri`` (the API key also comes from ``TILED_API_KEY``)."""
    try:
        from tiled.client import from_uri
    except ImportError as exc:
        raise CatalogError("reading from Tiled needs its client: pip install 'xanes-agent[tiled]'") from exc
    try:
        return from_uri(uri, api_key=api_key)
    except Exception as exc:  # noqa: BLE001 - httpx, auth and URL errors alike become one clear line
        raise CatalogError(f"{uri}: could not open the Tiled catalog ({type(exc).__name__}: {exc})") from exc


def select_runs(node: Any, uids: Iterable[str] = (), search: Iterable[str] = (), limit: int = DEFAULT_LIMIT,
                problems: list[str] | None = None) -> list[Any]:
    """The runs to replay: the given uids (a missing one is reported in ``problems``), else those
    whose start document matches every ``KEY=VALUE`` of ``search`` (dotted keys into the start
    document), else the ``limit`` most recent runs."""
    uids = list(uids)
    if uids:
        runs = []
        for u in uids:
            try:
                runs.append(node[u])
            except KeyError:
                msg = f"no run {u} in the catalog"
                if problems is None:
                    raise CatalogError(msg) from None
                problems.append(msg)
        return runs
    from tiled.queries import Key

    for term in search:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise CatalogError(f"--search {term!r}: write KEY=VALUE, e.g. element=Cu or sample.id=pellet-7")
        node = node.search(Key(f"start.{key}") == _value(value))
    keys = list(node)
    return [node[k] for k in keys[-limit:]] if limit else [node[k] for k in keys]


def _streams(run: Any) -> list[tuple[str, Any]]:
    holder = run["streams"] if "streams" in run else run
    names = sorted(holder, key=lambda n: (n != "primary", n))
    return [(n, holder[n]) for n in names]


def run_documents(run: Any) -> Iterator[tuple[str, dict]]:
    """The documents of one run (see the module docstring)."""
    md = run.metadata
    start = dict(md.get("start") or {})
    if "uid" not in start:
        raise CatalogError(f"{run.uri if hasattr(run, 'uri') else run}: not a Bluesky run (no start document)")
    yield "start", start
    for name, stream in _streams(run):
        smd = dict(stream.metadata)
        keys = dict(smd.get("data_keys") or {})
        desc_uid = smd.get("uid") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{start['uid']}/{name}"))
        yield "descriptor", {"uid": desc_uid, "time": smd.get("time", start.get("time", 0.0)),
                             "run_start": start["uid"], "name": name, "data_keys": keys,
                             "configuration": smd.get("configuration") or {}, "hints": smd.get("hints") or {},
                             "object_classes": smd.get("object_classes") or {}}
        present = set(stream)
        if "seq_num" not in present:
            continue  # a stream with no rows written
        seq = np.asarray(stream["seq_num"].read()).astype(int).tolist()
        n = len(seq)
        if not n:
            continue
        times = np.asarray(stream["time"].read(), float).tolist() if "time" in present else [0.0] * n
        data, stamps = {}, {}
        for k in keys:
            if k not in present:
                continue  # external (filled later) or not written
            data[k] = np.asarray(stream[k].read()).tolist()
            ts = f"ts_{k}"
            stamps[k] = np.asarray(stream[ts].read(), float).tolist() if ts in present else times
        yield "event_page", {"descriptor": desc_uid, "time": times, "seq_num": seq, "data": data,
                             "timestamps": stamps, "filled": {},
                             "uid": [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{desc_uid}/{s}")) for s in seq]}
    if md.get("stop"):
        yield "stop", dict(md["stop"])


def tiled_documents(uri: str, uids: Iterable[str] = (), search: Iterable[str] = (), limit: int = DEFAULT_LIMIT,
                    api_key: str | None = None, problems: list[str] | None = None) -> Iterator[tuple[str, dict]]:
    """Documents of the selected runs at ``uri``, run after run. A run that cannot be read is
    named in ``problems`` (when given, else raised) and the others still come."""
    node = connect(uri, api_key)
    for run in select_runs(node, uids, search, limit, problems):
        try:
            yield from run_documents(run)
        except Exception as exc:  # noqa: BLE001 - one unreadable run must not end a replay
            rid = getattr(run, "item", {}).get("id", "?")
            msg = f"{uri}: run {rid} could not be read ({type(exc).__name__}: {exc})"
            if problems is None:
                raise CatalogError(msg) from exc
            problems.append(msg)
