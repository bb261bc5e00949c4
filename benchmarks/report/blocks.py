"""The registry each report module fills (`blocks = Blocks()`, `@blocks("name")`): its own module, so that the
modules defining blocks and the builder collecting them import it and not each other."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.report.raw import Raw

Block = Callable[[Raw], str]


class Blocks(dict):
    """name -> function; `@blocks("name")` registers one."""

    def __call__(self, name: str) -> Callable[[Block], Block]:
        def register(fn: Block) -> Block:
            if name in self:
                raise ValueError(f"report block {name!r} defined twice")
            self[name] = fn
            return fn

        return register
