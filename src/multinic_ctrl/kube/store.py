"""The informer's in-memory cache: the last known state of every watched object, keyed `namespace/name`.

Reads return copies: reconcilers routinely build a patch by editing the object they read, and an edit that
leaked into the cache would make the next diff (and every other reader) see a state the server never had.
Writes happen only from the informer's single watcher task, so no locking is needed on the event loop.

Each object is kept as its compact JSON, deflated, not as a tree of dicts: a controller caches every object it
watches for the life of the process, and a decoded Kubernetes object costs two to five times its JSON in memory
(every dict, list and key string of every object is its own Python object). The objects of one store are much
alike (the same keys, conditions, messages, endpoints), so each is deflated against a recent one as preset
dictionary (`_Codec`), which leaves little more than what differs: 10,000 OpenstackConfigs with their status took
100 MiB as dicts, 21 MiB as JSON text, and take a few MiB now. Reads decode a fresh copy, which is also cheaper
than the deep copy they would need otherwise. What the cache never needs should not reach it at all: see
`Transform` and `without_bookkeeping`.

Optional indexes (e.g. by label value) answer "which objects carry label X=Y" without scanning everything;
they are maintained incrementally on every write.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .client import JsonObj, object_key

IndexFunc = Callable[[Mapping[str, Any]], Iterable[str]]
"""Maps an object to the index values it should be found under (none, one or many)."""

Transform = Callable[[JsonObj], JsonObj]
"""Applied by an informer to every object before it is cached or handed to handlers (client-go's
`SetTransform`): what is dropped here never sits in memory for the life of the process."""


def identity_only(obj: JsonObj) -> JsonObj:
    """Keep only what identifies a version of an object: kind, name, namespace, uid, resourceVersion.

    For watching Secrets: even a metadata-only watch carries annotations, and `kubectl apply` stores the whole
    applied object - data included - in `kubectl.kubernetes.io/last-applied-configuration`. Labels and
    annotations go too: whoever needs more must read the object when it needs it.
    """
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta}
    slim: JsonObj = {k: obj[k] for k in ("apiVersion", "kind") if k in obj}
    slim["metadata"] = kept
    return slim


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def without_bookkeeping(obj: JsonObj) -> JsonObj:
    """The object without what only the apiserver and kubectl use: `metadata.managedFields` (server-side
    apply's record of who set which field, often as large as the object itself) and the last-applied
    annotation (`kubectl apply`'s copy of the whole object as applied, which may also carry an inline secret).
    """
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return obj
    slim = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping) and LAST_APPLIED in annotations:
        slim["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**obj, "metadata": slim}


_DICTIONARY_EVERY = 1024
"""Objects encoded against one preset dictionary before the next object becomes the dictionary."""


class _Codec:
    """Compact JSON deflated against a preset dictionary: the first object, then every 1,024th one, so the
    dictionary follows what the store holds (a status appears after the first sync, say). Each encoded object
    keeps a reference to its dictionary; a dictionary no object uses any more is freed with the last of them."""

    def __init__(self) -> None:
        self._dictionary = b""
        self._encoded = 0

    def encode(self, obj: JsonObj) -> tuple[bytes, bytes]:
        """(dictionary, deflated JSON)."""
        raw = json.dumps(obj, separators=(",", ":")).encode()
        if self._encoded % _DICTIONARY_EVERY == 0:
            self._dictionary = raw[-32768:]  # deflate looks back 32 KiB at most
        self._encoded += 1
        deflate = zlib.compressobj(1, zdict=self._dictionary)
        return self._dictionary, deflate.compress(raw) + deflate.flush()

    @staticmethod
    def decode(dictionary: bytes, data: bytes) -> JsonObj:
        inflate = zlib.decompressobj(zdict=dictionary)
        decoded: JsonObj = json.loads(inflate.decompress(data) + inflate.flush())
        return decoded


def label_index(label: str) -> IndexFunc:
    """An index function filing objects under the value of `label` (objects without it: not indexed)."""

    def index(obj: Mapping[str, Any]) -> Iterable[str]:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        value = labels.get(label)
        return (str(value),) if value is not None else ()

    return index


def namespace_index(obj: Mapping[str, Any]) -> Iterable[str]:
    """Index function filing objects under their namespace."""
    namespace = (obj.get("metadata") or {}).get("namespace")
    return (str(namespace),) if namespace else ()


class Store:
    """Key → object map (held as deflated JSON) with copied reads and incrementally maintained secondary indexes."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, tuple[str | None, bytes, bytes]] = {}  # key -> (resourceVersion, dictionary, data)
        self._codec = _Codec()
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        # index name -> index value -> keys
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    # ---- reads (copies) ---------------------------------------------------------------------------
    def get(self, key: str) -> JsonObj | None:
        item = self._items.get(key)
        return _Codec.decode(item[1], item[2]) if item is not None else None

    def get_by_name(self, name: str, namespace: str | None = None) -> JsonObj | None:
        return self.get(f"{namespace}/{name}" if namespace else name)

    def objects(self) -> list[JsonObj]:
        return [_Codec.decode(dictionary, data) for _, dictionary, data in self._items.values()]

    def keys(self) -> list[str]:
        return list(self._items)

    def by_index(self, index_name: str, value: str) -> list[JsonObj]:
        """Objects filed under `value` by the index `index_name` (KeyError for an unknown index)."""
        keys = self._indices[index_name].get(value, set())
        return [self._decode(k) for k in sorted(keys)]

    def index_keys(self, index_name: str, value: str) -> list[str]:
        return sorted(self._indices[index_name].get(value, set()))

    def index_count(self, index_name: str, value: str) -> int:
        """How many objects `index_keys` would return, in O(1): for callers that need only the number (per
        reconcile, where listing and sorting a large group each time made the controller quadratic)."""
        return len(self._indices[index_name].get(value, ()))

    def resource_version(self, key: str) -> str | None:
        """The cached object's resourceVersion without decoding it (cheap change detection)."""
        item = self._items.get(key)
        return item[0] if item is not None else None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    # ---- writes (informer only) -------------------------------------------------------------------
    def upsert(self, obj: JsonObj) -> tuple[str, JsonObj | None]:
        """Insert or replace; returns (key, previous object or None). `obj` is encoded: later changes to it
        do not reach the cache."""
        key = object_key(obj)
        old = self.get(key)
        if old is not None:
            self._unindex(key, old)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        self._items[key] = (None if version is None else str(version), *self._codec.encode(obj))
        self._index(key, obj)
        return key, old

    def remove(self, key: str) -> JsonObj | None:
        item = self._items.pop(key, None)
        if item is None:
            return None
        old = _Codec.decode(item[1], item[2])
        self._unindex(key, old)
        return old

    def _decode(self, key: str) -> JsonObj:
        _, dictionary, data = self._items[key]
        return _Codec.decode(dictionary, data)

    def peek(self, key: str) -> JsonObj | None:
        """The cached object (decoded; the cache holds no live object to hand out)."""
        return self.get(key)

    def _index(self, key: str, obj: Mapping[str, Any]) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Mapping[str, Any]) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
