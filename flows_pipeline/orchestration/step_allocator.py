"""Preloaded first by the executor's forkserver: Arrow's allocator, chosen before Arrow loads.

Arrow reads ARROW_DEFAULT_MEMORY_POOL when it first allocates, so setting it here, before
step_preload imports the project, puts the forkserver and every step forked from it on the C
library's malloc instead of Arrow's bundled mimalloc; why: es.chunk_loading.use_system_allocator
(switching later, in the step, measured ~28 MB more tree PSS: mimalloc's pages stay behind).
A value set by the user is kept.
"""

import os

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
