"""The compiled store under AddressSanitizer and UndefinedBehaviorSanitizer: the extension is
built again with ``-fsanitize=address,undefined`` into a copy of the package, and the native
store's tests (the conformance suite and the differential test against the Python engine)
run against that build in a child process. Any out-of-bounds access, use after free or
undefined behaviour aborts the child, and the test fails with the sanitizer's report.

Skipped only when gcc or its ASan runtime is missing, and never in CI (``CI=true``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "shoal" / "_native"
SOURCES = ["store.c", "store_module.c"]
FLAGS = ["-O1", "-g", "-std=c11", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
         "-Wno-missing-field-initializers", "-Wno-cast-function-type"]
TESTS = ["tests/storage/test_memory_store.py", "tests/storage/test_engines_agree.py",
         "tests/storage/test_native_c_api.py"]


def asan_runtime() -> str | None:
    """The path of gcc's ASan runtime, or None when gcc or the runtime is missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    found = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                           text=True, timeout=30).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.timeout(600)
def test_the_native_store_tests_pass_under_address_sanitizer(tmp_path: Path) -> None:
    runtime = asan_runtime()
    if runtime is None:
        message = "gcc with its AddressSanitizer runtime (libasan) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (scripts/install-test-deps.sh installs gcc)")
        pytest.skip(message)
    package = tmp_path / "shoal"
    shutil.copytree(ROOT / "shoal", package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    target = package / ("_native_store" + sysconfig.get_config_var("EXT_SUFFIX"))
    built = subprocess.run(
        ["gcc", *FLAGS, "-I", sysconfig.get_paths()["include"],
         *[str(NATIVE / name) for name in SOURCES], "-o", str(target)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),  # ahead of the editable install: this copy's build
        "LD_PRELOAD": runtime,
        "PYTHONMALLOC": "malloc",
        # CPython frees little at exit by design: leaks are not what this looks for.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "SHOAL_AGREE_EXAMPLES": "60",
        "SHOAL_ENGINE": "native",
    }
    env.pop("PYTEST_ADDOPTS", None)
    probe = subprocess.run(
        [sys.executable, "-c", "import shoal._native_store as m; print(m.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(target)
    tests = [str(ROOT / t) for t in TESTS]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "native",
         *tests],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=540,
    )
    output = run.stdout[-4000:] + run.stderr[-8000:]
    assert run.returncode == 0, output
    assert " passed" in run.stdout, output
