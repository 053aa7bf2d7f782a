"""`Closing`: the base of resources that hold processes or connections and are closed with ``close()``."""

from __future__ import annotations

from typing import Self


class Closing:
    """A resource with ``close()``; ``with resource:`` closes it on exit, whatever happened inside."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["Closing"]
