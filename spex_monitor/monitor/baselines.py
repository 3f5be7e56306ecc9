"""The baseline of each (model, version): which map windows are compared with, who chose it, how it moves.

A baseline is *pinned* when an operator chose it (the SetBaseline RPC, ``baseline.file``): the rolling
baseline never drifts it. Without one, the first ``windows_needed`` windows are merged into an automatic
baseline (source ``"first N windows"``), which ``baseline.rolling_decay`` then rolls forward with every
quiet window.
"""

from __future__ import annotations

from collections.abc import Callable

from .maps import InteractionMap
from .store import Store
from .windows import baseline_from_windows, roll_baseline

AUTOMATIC_SOURCE = "first "  # the source of a baseline built from the first windows ("first 2 windows")
Key = tuple[str, str]  # (model, version)


class Baselines:
    """Baselines by (model, version), loaded from and written to the store.

    Args:
        store: where baselines persist (``None``: memory only).
        persist: runs a store write without raising (``Monitor.persist``); returns ``None`` on failure.
        public_map: what a map may look like in the store (rare words replaced).
        windows_needed: first windows merged into an automatic baseline.
    """

    def __init__(
        self,
        store: Store | None,
        persist: Callable[..., object],
        public_map: Callable[[InteractionMap], InteractionMap],
        windows_needed: int,
    ) -> None:
        self.store = store
        self.persist = persist
        self.public_map = public_map
        self.windows_needed = windows_needed
        self._maps: dict[Key, InteractionMap] = {}
        self._pinned: set[Key] = set()  # set by an operator: the rolling baseline leaves them
        self._warmup: dict[Key, list[InteractionMap]] = {}

    def set(self, key: Key, baseline: InteractionMap, source: str = "api", pinned: bool = True) -> None:
        """Use ``baseline`` for ``key`` from now on and store it under ``source``."""
        self._maps[key] = baseline
        if pinned:
            self._pinned.add(key)
        else:
            self._pinned.discard(key)
        if self.store is not None:
            self.persist(self.store.set_baseline, *key, self.public_map(baseline), source)

    def get(self, key: Key) -> InteractionMap | None:
        """The baseline of ``key`` (loaded from the store the first time), or ``None`` when there is none."""
        if key not in self._maps and self.store is not None:
            stored = self.store.baseline_with_source(*key)  # type: ignore[attr-defined]
            if stored is not None:
                self._maps[key] = stored[0]
                if not stored[1].startswith(AUTOMATIC_SOURCE):
                    self._pinned.add(key)
        return self._maps.get(key)

    def warm_up(self, key: Key, window: InteractionMap) -> None:
        """Count ``window`` towards ``key``'s automatic baseline; set it once enough windows are in."""
        warm = self._warmup.setdefault(key, [])
        warm.append(window)
        if len(warm) >= self.windows_needed:
            self.set(
                key,
                baseline_from_windows(warm),
                source=f"{AUTOMATIC_SOURCE}{len(warm)} windows",
                pinned=False,
            )
            del self._warmup[key]

    def roll(self, key: Key, window: InteractionMap, decay: float) -> None:
        """Fold a quiet ``window`` into ``key``'s baseline with weight ``decay`` (never a pinned one)."""
        baseline = self._maps.get(key)
        if baseline is not None and key not in self._pinned:
            self._maps[key] = roll_baseline(baseline, window, decay)
