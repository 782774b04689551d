"""The backend interface every runtime backend follows (Polygraphy-style runners)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mcaclip.errors import McaError


class BackendError(McaError):
    """A backend cannot be created or cannot run a graph."""


class GraphRunner(Protocol):
    """Runs one graph. A context manager; ``infer`` maps input names to arrays and returns
    every output by name. I/O names come from the bundle's manifest."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> GraphRunner: ...

    def __exit__(self, *exc) -> None: ...


class RunnerBase:
    """Shared context-manager plumbing and feed checking."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise BackendError(f"{self.name}: missing inputs {missing}")
