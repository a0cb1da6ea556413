"""Who a read is for: what ownership checks need of the authenticated user."""

from __future__ import annotations

from typing import Protocol


class Viewer(Protocol):
    """An ORM ``User``, or the user cache's snapshot of one (the fast read path)."""

    @property
    def id(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...
