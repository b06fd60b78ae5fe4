"""hello.py behind a slow import, for bench/reload.sh.

Importing this file first burns IMPORT_CPU_S seconds of CPU, then loads
hello.py (next to it) and serves its `application`: the same answers, but
a new worker now takes about as long to become ready as one importing a
mid-sized Flask or Django project, and, like such an import (unmarshalling
and running module code), that time is CPU, not sleep: on a small machine
the new workers' imports compete with the old workers still serving.

Standard library only, like hello.py.
"""

import importlib.util
import os
import time

IMPORT_CPU_S = 0.3

_until = time.process_time() + IMPORT_CPU_S
while time.process_time() < _until:
    sum(range(1000))

_spec = importlib.util.spec_from_file_location(
    "_bench_hello", os.path.join(os.path.dirname(os.path.abspath(__file__)), "hello.py"))
_hello = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hello)

application = _hello.application
