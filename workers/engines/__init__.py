"""The synthesis engines a worker can load (`LOCKN_ENGINES`), one module each.

Engines implement `backend.media.engine.Engine` and import nothing else from `backend/` but media helpers.
Each has one entry in the registry, `backend/queue/engines.py` (class, queue, settings, OpenAI model), from which
`workers/engine_loader.py` builds it with its configuration.
"""
