"""
A store whose every call is timed in the server's metrics
(C{gameproto_store_operation_duration_seconds} and C{..._errors_total}, labelled with
the backend and the method's name): the server wraps its store in one.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gameproto.store import IStore


@implementer(IStore)
class MeasuredStore:
    """
    C{store}, each method's Deferred timed in C{metrics}.  Attributes that are not
    methods (C{description}) are C{store}'s own.
    """

    def __init__(self, store: Any, metrics: Any) -> None:
        self._store = store
        self._metrics = metrics
        self._backend = str(store.description).split(":", 1)[0] or "store"

    @property
    def measured(self) -> Any:
        """The store being measured."""
        return self._store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if name.startswith("_") or not callable(value):
            return value
        metrics = self._metrics
        histogram = metrics.store_latency.labels(self._backend, name)
        errors = metrics.store_errors.labels(self._backend, name)

        def measured(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if isinstance(result, Deferred):
                return metrics.timed(histogram, errors, result)
            return result

        # Looked up once per method: later calls find it on the instance.
        self.__dict__[name] = measured
        return measured
