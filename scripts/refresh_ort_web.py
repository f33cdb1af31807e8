"""Refresh the vendored onnxruntime-web runtime of the browser demo (``src/snnse/web/vendor``).

The page needs two files of the npm package ``onnxruntime-web`` (MIT): ``ort.wasm.bundle.min.mjs``
(the JavaScript API with the WASM loader bundled in) and ``ort-wasm-simd-threaded.wasm`` (the
CPU runtime; it is found beside the bundle by URL). The npm tarball carries no licence file, so the
licence and third-party notices are taken from the Python wheel of the same onnxruntime release.
``VERSION.json`` pins the version and the sha256 of every vendored file; ``--check`` verifies
them (the tests run it), so a hand-edited or truncated runtime is caught.

Usage::

    python scripts/refresh_ort_web.py                  # the pinned version again
    python scripts/refresh_ort_web.py --version 1.31.0  # a new one (then run the browser tests)
    python scripts/refresh_ort_web.py --check           # verify the vendored files

Needs npm and pip (the npm registry and PyPI) only when refreshing, never to install snnse.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from snnse.atomic import file_sha256

VENDOR = Path(__file__).resolve().parents[1] / "src" / "snnse" / "web" / "vendor"
FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
NOTICES = ("LICENSE", "ThirdPartyNotices.txt")


def check(vendor: Path = VENDOR) -> list[str]:
    """Problems with the vendored files (an empty list when they match ``VERSION.json``)."""
    try:
        pinned = json.loads((vendor / "VERSION.json").read_text())
    except (OSError, ValueError) as e:
        return [f"VERSION.json: {e}"]
    problems = []
    for name, digest in pinned["sha256"].items():
        path = vendor / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif file_sha256(path) != digest:
            problems.append(f"{name}: sha256 differs from VERSION.json")
    missing = set(FILES + NOTICES) - set(pinned["sha256"])
    problems += [f"{name}: not pinned in VERSION.json" for name in sorted(missing)]
    return problems


def refresh(version: str, vendor: Path = VENDOR) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(["npm", "pack", f"onnxruntime-web@{version}"], cwd=tmp, check=True,
                       capture_output=True)
        with tarfile.open(tmp / f"onnxruntime-web-{version}.tgz") as tar:
            for name in FILES:
                member = tar.getmember(f"package/dist/{name}")
                with tar.extractfile(member) as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "-d", str(tmp / "wheel"), f"onnxruntime=={version}"],
                       check=True, capture_output=True)
        wheel = next((tmp / "wheel").glob("onnxruntime-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in NOTICES:
                (tmp / name).write_bytes(zf.read(f"onnxruntime/{name}"))
        staged = tmp / "vendor"
        staged.mkdir()
        for name in FILES + NOTICES:
            shutil.move(tmp / name, staged / name)
        pinned = {
            "package": "onnxruntime-web",
            "version": version,
            "source": f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{version}.tgz (dist/), "
            f"licence texts from the onnxruntime {version} wheel on PyPI",
            "licence": "MIT",
            "sha256": {name: file_sha256(staged / name) for name in FILES + NOTICES},
        }
        (staged / "VERSION.json").write_text(json.dumps(pinned, indent=2) + "\n")
        if vendor.exists():
            shutil.rmtree(vendor)
        shutil.copytree(staged, vendor)
    return pinned


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", help="onnxruntime-web version (default: the pinned one)")
    ap.add_argument("--check", action="store_true", help="only verify the vendored files")
    args = ap.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        print("vendored onnxruntime-web: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
        return 1 if problems else 0
    version = args.version or json.loads((VENDOR / "VERSION.json").read_text())["version"]
    pinned = refresh(version)
    print(json.dumps(pinned, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
