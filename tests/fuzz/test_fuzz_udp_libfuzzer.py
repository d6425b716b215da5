"""Coverage-guided fuzzing of the compiled UDP datagram core with libFuzzer.

``native/udp_fuzz.c`` drives ``shoal/_native/udp.c`` (decoder, connection ids, replies)
built with clang's ``-fsanitize=fuzzer,address,undefined``: any out-of-bounds read or
write, undefined behaviour or broken rule (an error reply larger than its datagram, URL
data past its buffer, ...) aborts. The test replays ``corpus/udp_native/`` (seeds, the
inputs the fuzzer kept, and every input that ever crashed it), then fuzzes for a bounded
time (``SHOAL_LIBFUZZER_SECONDS``, 30 by default). The first byte of an input is the
harness' flags (source family, id taken as valid, allow_ip_param), the rest the datagram.

When it finds a crash, the failure names the input file: copy it into
``corpus/udp_native/`` so it stays a regression test, then fix the bug.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "shoal" / "_native"
HARNESS = Path(__file__).resolve().parent / "native" / "udp_fuzz.c"
CORPUS = Path(__file__).resolve().parent / "corpus" / "udp_native"
SECONDS = int(os.environ.get("SHOAL_LIBFUZZER_SECONDS", "30"))


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang")
    if clang is None:
        message = "clang is not installed (scripts/install-test-deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    binary = tmp_path_factory.mktemp("libfuzzer") / "udp_fuzz"
    subprocess.run(
        [clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
         "-fno-sanitize-recover=undefined", "-I", str(NATIVE), str(HARNESS),
         str(NATIVE / "udp.c"), str(NATIVE / "blake2b.c"), "-o", str(binary)],
        check=True, timeout=300,
    )
    return binary


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.timeout(600)
def test_every_kept_input_runs_clean(fuzzer: Path, tmp_path: Path) -> None:
    inputs = sorted(str(p) for p in CORPUS.iterdir() if p.is_file())
    assert inputs, "the corpus must not be empty"
    done = _run([str(fuzzer), *inputs], tmp_path, 300)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.timeout(SECONDS + 600)
def test_libfuzzer_finds_nothing_in_a_bounded_run(fuzzer: Path, tmp_path: Path) -> None:
    work = tmp_path / "corpus"
    work.mkdir()
    done = _run(
        [str(fuzzer), f"-max_total_time={SECONDS}", "-timeout=5", "-rss_limit_mb=1024",
         "-max_len=2048", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/",
         str(work), str(CORPUS)],
        tmp_path, SECONDS + 300,
    )
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-",
                                                                               "timeout-", "oom-")))
    assert done.returncode == 0 and not crashes, (
        f"libFuzzer found {crashes} in {tmp_path}: copy them into {CORPUS} and fix the bug\n"
        + done.stderr[-4000:]
    )
