"""The boundary between Python and the Lua scripts that keep Gimel's data in Redis.

- :mod:`.schema`: every fact both sides share (meta fields, the day length, modes, reply tags,
  de-dup constants, each script's ARGV), and the Lua generated from them;
- :mod:`.runner`: :class:`~.runner.Scripts` sends calls, reloading a lost script once;
- one module per script, beside its ``.lua`` file: the call builder and the reply's type
  (``track``, ``read``, ``plan``, ``settings``, ``clear``, ``namespace``, ``import_legacy``);
- ``prelude.lua``: the Lua functions scripts share (creating an experiment).

Keys are built in :mod:`gimel_core.keys`, de-dup records in :mod:`gimel_core.dedup`, the
Redis client in :mod:`gimel_core.store`.
"""
