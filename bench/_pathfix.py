"""Imported first by the suite's scripts: keep bench/ on sys.path, but last.

Python puts a script's own directory first on ``sys.path``, and bench/ holds
``http.py`` and ``grpc.py``, which would then shadow the standard library's
``http`` (used by aiohttp and urllib) and the ``grpc`` package.
"""

import sys
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != _BENCH] + [_BENCH]
