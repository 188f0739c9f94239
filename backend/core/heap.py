"""The garbage collector's view of a long-running process: what was built at start is never scanned again.

A full (generation 2) collection walks every tracked object the process holds. The web process holds ~220,000
after start (FastAPI, pydantic, SQLAlchemy, Reflex, the routes and models built from them), and walking them
took 238-251 ms on the 2-core bench machine (measured with a `gc.callbacks` probe in the web process during
`python -m bench.flood`). The collection holds the GIL, so every request in flight, `/health/live` included,
waited that long: the p99 of whichever phase of the flood bench the pause fell in.

Those objects live as long as the process, so scanning them can never free anything. `gc.freeze()` moves them
to the permanent generation, which collections skip; objects made later are collected as before. This is what
CPython's documentation suggests for servers (and what Instagram measured on theirs).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what start-up left as garbage, then exclude every surviving object from later collections.

    Call once a process has built what it keeps (the app, its routes, a worker's engines); a second call later
    in start-up freezes what was built in between (the first call's objects are no longer walked, so it is
    cheap). Returns how many objects are frozen in all."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
