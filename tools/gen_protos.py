"""Generate Python code and type stubs from protos/ into the bibliodesk package.

python tools/gen_protos.py            # regenerate in place
python tools/gen_protos.py --check    # exit 1 when the committed code is stale
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT_PACKAGE = ROOT / "bibliodesk"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out: Path) -> None:
    # protoc finds the mypy plugins (protoc-gen-mypy, …) on PATH: the running venv's bin first.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Packages for the generated modules (protoc writes no __init__.py files).
    for directory in (out / "bibliodesk").rglob("*"):
        if directory.is_dir():
            (directory / "__init__.py").touch()


def generated_files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file()
        and (p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py")
        and "/v1/" in str(p.relative_to(root)).replace("\\", "/") + "/"
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh_root = out / "bibliodesk"
        fresh = {k: v for k, v in generated_files(fresh_root).items() if k.split("/")[1:2] == ["v1"]}
        current = {k: v for k, v in generated_files(OUT_PACKAGE).items() if k.split("/")[1:2] == ["v1"]}
        stale = sorted(
            k
            for k in fresh.keys() | current.keys()
            if k not in fresh or k not in current or not filecmp.cmp(fresh[k], current[k], shallow=False)
        )
        if options.check:
            if stale:
                print("generated code is stale; run `make protos`:", *stale, sep="\n  ")
                return 1
            print(f"generated code is up to date ({len(fresh)} files)")
            return 0
        for rel in stale:
            if rel in current and rel not in fresh:
                current[rel].unlink()
        for rel, src in fresh.items():
            dst = OUT_PACKAGE / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (dst.parent.parent / "__init__.py").touch()
            shutil.copyfile(src, dst)
        print(f"generated {len(fresh)} files ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
