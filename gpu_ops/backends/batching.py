"""Batching strategies: which waiting requests form the next batch, and when it may start.

- static: fixed batches of `batch_size` in arrival order; a batch starts once all its members arrived.
- dynamic: as soon as the engine is free, up to `batch_size` of the requests already waiting.
- sorted_static / sorted_dynamic: the same, but requests are ordered by prompt length first
  (offline: over the whole set; open loop: among those that have arrived), which cuts padding.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpu_ops.backends.base import Request


@dataclass
class BatchPlan:
    strategy: str
    batch_size: int

    def next_batch(self, pending: list[Request], now: float, all_remaining: int) -> tuple[list[Request], float]:
        """(batch, start time >= now). `pending` is every unserved request, arrived or not, in arrival order."""
        sort = self.strategy.startswith("sorted")
        if self.strategy.endswith("static"):
            if sort and all(r.arrival_s <= now for r in pending):
                pool = sorted(pending, key=lambda r: (len(r.prompt_token_ids), r.arrival_s))
            else:
                pool = pending
            batch = pool[: self.batch_size]
            return batch, max(now, max(r.arrival_s for r in batch))
        first_arrival = pending[0].arrival_s
        start = max(now, first_arrival)
        arrived = [r for r in pending if r.arrival_s <= start]
        if sort:
            arrived = sorted(arrived, key=lambda r: (len(r.prompt_token_ids), r.arrival_s))
        return arrived[: self.batch_size], start
