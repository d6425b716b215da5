"""The compiled UDP and HTTP data planes under AddressSanitizer and UndefinedBehaviorSanitizer.

The extensions are built again with ``-fsanitize=address,undefined`` into a copy of the
package (with the swarm table, which the compiled answers call), and the differential
tests (tests/fuzz/test_fuzz_udp_native.py, test_fuzz_http_native.py: hostile datagrams,
requests and queries through the C and the Python code; tests/server/
test_udp_native_answer.py, test_http_native_answer.py: announces and scrapes answered in C
against the Python path; test_http_native_kept.py: keep-alive connections kept in C) and
the building-block tests (tests/test_native_udp.py) run against that build in a child
Python with the ASan runtime preloaded. Any out-of-bounds access, use after free or
undefined behaviour aborts the child and fails this test.
Bounded: the fuzz profile's example counts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from support.native import extension_sources

ROOT = Path(__file__).resolve().parents[1]


def _asan_runtime() -> str | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    found = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                           text=True, check=False).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.timeout(900)  # a build and two test modules under the sanitizers
def test_the_native_data_plane_tests_pass_under_address_sanitizer(tmp_path: Path) -> None:
    runtime = _asan_runtime()
    include = sysconfig.get_paths()["include"]
    if runtime is None or not (Path(include) / "Python.h").exists():
        message = "gcc with libasan and the Python headers are needed for the ASan build"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    src = tmp_path / "src"
    shutil.copytree(ROOT / "shoal", src / "shoal",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    # The swarm table too, so the compiled answers (announces applied to the table through
    # its C API) run sanitized end to end.
    built: dict[str, Path] = {}
    for module, std in (("udp", "gnu11"), ("http", "gnu11"), ("store", "c11")):
        name = f"shoal._native_{module}"
        built[module] = src / "shoal" / (f"_native_{module}"
                                         + sysconfig.get_config_var("EXT_SUFFIX"))
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", f"-std={std}",
             "-I", include, *map(str, extension_sources(name)), "-o", str(built[module])],
            check=True, timeout=300,
        )
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "LD_PRELOAD": runtime,
        "PYTHONMALLOC": "malloc",  # every object on the instrumented heap
        # CPython's own allocations are not leaks to report; bad accesses abort.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "CI": "true",  # the extension must load: a skip would prove nothing
    }
    # Run from the copy, so `shoal` (and its sanitized extension) is the copy's.
    probe = subprocess.run(
        [sys.executable, "-c", "import shoal._native_udp as n, shoal._native_http as h; "
         "print(n.__file__); print(h.__file__)"],
        cwd=src, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [str(built["udp"]), str(built["http"])], probe.stdout
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_native_udp.py"),
         str(ROOT / "tests" / "fuzz" / "test_fuzz_udp_native.py"),
         str(ROOT / "tests" / "fuzz" / "test_fuzz_http_native.py"),
         str(ROOT / "tests" / "server" / "test_udp_native_answer.py"),
         str(ROOT / "tests" / "server" / "test_http_native_answer.py"),
         str(ROOT / "tests" / "server" / "test_http_native_kept.py")],
        cwd=src, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
