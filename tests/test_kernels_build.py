"""The one loader of the C++ extensions (snnse.kernels.build): the sources in the package's csrc/,
the cache key, package data, and the fallback when a build fails."""

import shutil
import sys
import warnings
from fnmatch import fnmatch
from pathlib import Path

import pytest

import snnse
from snnse import fast_cpp, kernels
from snnse.kernels import build

EXTENSIONS = {"snnse_fused": kernels, "snnse_step": fast_cpp}


def test_the_sources_are_files_in_the_package_folder():
    """Both extensions read their C++ from snnse/kernels/csrc/: every source and the local headers
    they include are there (the headers found through their #include lines)."""
    assert build.CSRC == Path(snnse.__file__).resolve().parent / "kernels" / "csrc"
    names = {}
    for module in EXTENSIONS.values():
        files = build.dependencies(module.SOURCES)
        assert all(p.parent == build.CSRC and p.is_file() for p in files)
        names[module.PREFIX] = {p.name for p in files}
        assert set(module.SOURCES) <= names[module.PREFIX]
    assert names["snnse_fused_"] == {"neurons.cpp", "misc.cpp", "fused_ops.cpp", "fused.h", "common.h"}
    assert names["snnse_step_"] == {"step_dpsnn.cpp", "step_s4.cpp", "step_ops.cpp", "step.h", "real_fft.h",
                                    "common.h"}
    # nothing in csrc/ is left out of both builds (and so out of their cache keys)
    assert {p.name for p in build.CSRC.iterdir()} == names["snnse_fused_"] | names["snnse_step_"]


def test_every_csrc_file_is_package_data():
    """pyproject.toml ships csrc/ in the wheel (setuptools package-data of snnse.kernels)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["snnse.kernels"]
    for p in build.CSRC.iterdir():
        rel = p.relative_to(build.CSRC.parent).as_posix()
        assert any(fnmatch(rel, pat) for pat in patterns), rel


def test_the_cache_key_follows_every_source_header_flag_and_the_cpu(tmp_path, monkeypatch):
    """The build's name changes with the content of any source or included header, the flags and
    the CPU; a copy with the same contents elsewhere has the same name."""
    csrc = tmp_path / "csrc"
    shutil.copytree(build.CSRC, csrc)
    for module in EXTENSIONS.values():
        name = build.extension_name(module.PREFIX, module.SOURCES, module.FLAGS, csrc)
        assert name == module.NAME == build.extension_name(module.PREFIX, module.SOURCES, module.FLAGS)
        assert name.startswith(module.PREFIX) and len(name) == len(module.PREFIX) + 12
        assert build.extension_name(module.PREFIX, module.SOURCES, module.FLAGS[:-1], csrc) != name
        for dep in build.dependencies(module.SOURCES, csrc):
            text = dep.read_text()
            dep.write_text(text + "\n// edited\n")
            assert build.extension_name(module.PREFIX, module.SOURCES, module.FLAGS, csrc) != name, dep.name
            dep.write_text(text)
        assert build.extension_name(module.PREFIX, module.SOURCES, module.FLAGS, csrc) == name
        monkeypatch.setattr(build, "cpu_id", lambda: "another CPU")
        assert build.extension_name(module.PREFIX, module.SOURCES, module.FLAGS, csrc) != name
        monkeypatch.undo()
    (csrc / "step.h").unlink()  # a missing header is an error (a failed build), not a silent omission
    with pytest.raises(FileNotFoundError):
        build.extension_name(fast_cpp.PREFIX, fast_cpp.SOURCES, fast_cpp.FLAGS, csrc)


def test_a_failed_compilation_warns_once_and_falls_back(tmp_path, monkeypatch):
    """A source the compiler rejects: load_extension raises with the compiler's output, load_once
    turns that into one warning naming the error, None, and no second attempt."""
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available() or shutil.which("c++") is None:
        pytest.skip("no ninja or no C++ compiler: the build cannot even start")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    (tmp_path / "broken.h").write_text("#error simulated compiler failure\n")
    (tmp_path / "broken.cpp").write_text('#include "broken.h"\n')
    state = {"tried": False, "ops": None}
    calls = []

    def build_broken():
        calls.append(1)
        return build.load_extension("snnse_test_broken_", ["broken.cpp"], ["-O0"], tmp_path)

    with pytest.warns(UserWarning, match=r"^test kernel unavailable \(RuntimeError: .*simulated compiler failure"):
        assert build.load_once(state, build_broken, lambda err: f"test kernel unavailable ({err})", UserWarning) is None
    assert state["tried"] and "simulated compiler failure" in state["error"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build.load_once(state, build_broken, lambda err: err, UserWarning) is None
    assert len(calls) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="the extensions are built and tested on Linux")
@pytest.mark.parametrize("namespace", list(EXTENSIONS))
def test_the_extensions_load_from_the_package_sources(namespace):
    """Where a compiler is present, each extension builds from csrc/ and registers its operators."""
    module = EXTENSIONS[namespace]
    ops = module.load()
    if ops is None:
        pytest.skip(f"{namespace} does not build here")
    import torch

    assert ops is getattr(torch.ops, namespace)
    expected = {"snnse_fused": ["lif_forward", "lif_backward", "linear_scan", "leaky_forward", "alif_forward",
                                "alif_backward", "dw_backward", "surrogate_grad"],
                "snnse_step": ["dpsnn_step", "s4_stft_step", "level_step", "s4_masker"]}[namespace]
    for op in expected:
        assert hasattr(ops, op), op
    if namespace == "snnse_step":
        assert torch.classes.snnse_step.Hop is not None


@pytest.mark.skipif(sys.platform != "linux", reason="the extensions are built and tested on Linux")
def test_a_wheel_ships_the_sources_and_the_installed_package_builds_from_them(tmp_path):
    """A wheel built from the repository holds csrc/ (and the browser page's files); installed
    elsewhere, its loader reads its own csrc/ and the compiled step builds (or loads the cached
    build whose key is the hash of those very sources) and registers its operators."""
    import subprocess
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(root),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("snnse-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for p in build.CSRC.iterdir():
        assert f"snnse/kernels/csrc/{p.name}" in names, p.name
    assert {"snnse/web/static/index.html", "snnse/web/vendor/ort-wasm-simd-threaded.wasm",
            "snnse/web/vendor/VERSION.json"} <= names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    probe = ("import sys; from pathlib import Path; from snnse.kernels import build; from snnse import fast_cpp;"
             f"assert build.CSRC.is_relative_to(Path({str(tmp_path / 'site')!r})), build.CSRC;"
             "ops = fast_cpp.load(); print('built' if ops is not None and hasattr(ops, 'dpsnn_step') else 'none')")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    if fast_cpp.load() is not None:  # where the compiler works here, it works from the wheel too
        assert out.stdout.strip() == "built", out.stderr
