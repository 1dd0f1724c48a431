"""Demo data for ``bibliodesk up --demo``: filled in below once patrons and items exist."""

from __future__ import annotations

from bibliodesk.runtime.service import ServiceRuntime


async def load_demo(rt: ServiceRuntime) -> None:
    return None
