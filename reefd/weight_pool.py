"""WeightPool: device copies of weights, shared by content across models.

Two clients that register the same weights (the same model served twice, a
shared backbone) get one device copy. A weight is keyed by (content digest,
dtype, bytes); the digest is computed by the server off its IO thread, from the
bytes that actually arrived, so one client cannot name another's weights
without holding the same bytes. The pool counts references and frees a copy
when the last model using it is unloaded. Imports the standard library only;
backends pass in how to make and free a device copy.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

WeightKey = tuple[str, str, int]
"""(content digest, dtype name, bytes)."""

DIGEST_BYTES = 16


def digest(data: Any) -> str:
    """The content digest of a bytes-like weight (BLAKE2b, 128 bits, hex).

    hashlib releases the GIL on large buffers, so hashing in a worker thread does
    not hold up the IO thread.
    """
    return hashlib.blake2b(memoryview(data), digest_size=DIGEST_BYTES).hexdigest()


@dataclass
class _Entry(Generic[T]):
    value: T
    refs: int


class WeightPool(Generic[T]):
    """Reference-counted device copies keyed by content."""

    def __init__(self, free: Callable[[T], None] = lambda value: None) -> None:
        self._free = free
        self._entries: dict[WeightKey, _Entry[T]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        """Acquires served by an existing copy."""

    def acquire(self, key: WeightKey, make: Callable[[], T]) -> T:
        """The copy for `key`, made with `make()` if the pool has none."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.refs += 1
                self.hits += 1
                return entry.value
        value = make()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:  # made concurrently: keep the first
                entry.refs += 1
                self.hits += 1
                self._free(value)
                return entry.value
            self._entries[key] = _Entry(value, 1)
        return value

    def release(self, key: WeightKey) -> None:
        with self._lock:
            entry = self._entries[key]
            entry.refs -= 1
            if entry.refs > 0:
                return
            del self._entries[key]
        self._free(entry.value)

    def unique_bytes(self) -> int:
        """Bytes of device copies held (each shared copy counted once)."""
        with self._lock:
            return sum(key[2] for key in self._entries)

    def referenced_bytes(self) -> int:
        """Bytes the loaded models would hold without sharing."""
        with self._lock:
            return sum(key[2] * e.refs for key, e in self._entries.items())

    def stats(self) -> dict[str, int]:
        return {
            "unique_bytes": self.unique_bytes(),
            "referenced_bytes": self.referenced_bytes(),
            "copies": len(self._entries),
            "shared_hits": self.hits,
        }
