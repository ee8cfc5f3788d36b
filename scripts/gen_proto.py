#!/usr/bin/env python3
"""Regenerate the Python gRPC code from proto/engram/v1/*.proto, or check it is current.

    python scripts/gen_proto.py           # write src/engram/api/grpc/gen/
    python scripts/gen_proto.py --check   # exit 1 (and list the files) if the committed code is stale

Uses grpc_tools.protoc (grpcio-tools) and mypy-protobuf (type stubs, ``.pyi``),
both pinned in pyproject.toml's ``test`` extra, so the output is byte-for-byte
reproducible. protoc writes ``engram/v1/*_pb2.py`` with absolute imports
(``from engram.v1 import memory_pb2``); we flatten them into one package,
``engram.api.grpc.gen``, and rewrite those imports to be package-relative so
the generated code never claims the top-level name ``engram.v1``. The
descriptors keep their proto file names (``engram/v1/memory.proto``), which is
what server reflection and wire compatibility depend on.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTOS = ("engram/v1/memory.proto", "engram/v1/service.proto")
GRPC_PROTOS = ("engram/v1/service.proto",)  # memory.proto has no services
OUT = ROOT / "src" / "engram" / "api" / "grpc" / "gen"

INIT = '''"""Generated gRPC code for engram.v1 - DO NOT EDIT.

Regenerate with ``python scripts/gen_proto.py`` (``--check`` verifies it is current).
"""
'''

_IMPORT = re.compile(r"^from engram\.v1 import (\w+)", re.MULTILINE)


def _plugin(name: str) -> str:
    """Path of a protoc plugin installed next to this interpreter (or on PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        sys.exit(f"gen_proto: {name} not found; install the test extra (pip install -e '.[test]')")
    return found


def generate() -> dict[str, str]:
    """Run protoc into a temporary directory; return {file name: fixed text}."""
    with tempfile.TemporaryDirectory() as tmp:
        base = [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        ]
        runs = [
            [*base, f"--python_out={tmp}", f"--mypy_out={tmp}", *PROTOS],
            [*base, f"--grpc_python_out={tmp}", f"--mypy_grpc_out={tmp}", *GRPC_PROTOS],
        ]
        for cmd in runs:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"gen_proto: protoc failed:\n{proc.stderr}")
        files: dict[str, str] = {"__init__.py": INIT}
        gen_dir = Path(tmp) / "engram" / "v1"
        for path in sorted(gen_dir.iterdir()):
            text = path.read_text()
            files[path.name] = _IMPORT.sub(r"from . import \1", text)
        return files


def stale(files: dict[str, str]) -> list[str]:
    """Names of committed files that differ from ``files``, plus extra files in OUT."""
    out = []
    for name, text in files.items():
        target = OUT / name
        if not target.exists() or target.read_text() != text:
            out.append(name)
    if OUT.exists():
        for path in OUT.iterdir():
            if path.is_file() and path.name not in files:
                out.append(f"{path.name} (not generated; remove it)")
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the committed code is stale"
    )
    parser.add_argument("--diff", action="store_true", help="with --check: print a unified diff")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        bad = stale(files)
        if not bad:
            print(f"gen_proto: {OUT.relative_to(ROOT)} is up to date ({len(files)} files)")
            return 0
        print(
            "gen_proto: generated code is stale; run `python scripts/gen_proto.py` and commit:",
            file=sys.stderr,
        )
        for name in bad:
            print(f"  {OUT.relative_to(ROOT) / name}", file=sys.stderr)
            if args.diff and name in files:
                old = (OUT / name).read_text().splitlines(True) if (OUT / name).exists() else []
                sys.stderr.writelines(difflib.unified_diff(old, files[name].splitlines(True), name, name))
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    for path in OUT.iterdir():
        if path.is_file() and path.name not in files:
            path.unlink()
    for name, text in files.items():
        tmp = OUT / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, OUT / name)
    print(f"gen_proto: wrote {len(files)} files to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
