"""Coverage-guided fuzzing of the compiled parsers with libFuzzer: the UDP datagram core and
the HTTP request core, the C that reads hostile bytes from the internet.

``native/udp_fuzz.c`` drives ``shoal/_native/udp.c`` (decoder, connection ids, replies),
``native/http_fuzz.c`` drives ``shoal/_native/http.c`` (request heads, announce and scrape
queries, the real-IP header), each built with clang's ``-fsanitize=fuzzer,address,undefined``:
any out-of-bounds read or write, undefined behaviour or broken rule (an error reply larger
than its datagram, a request field outside the input, ...) aborts. Each harness replays its
corpus (``corpus/udp_native/``, ``corpus/http_native/``: seeds, the inputs the fuzzer kept,
and every input that ever crashed it), then fuzzes for a bounded time
(``SHOAL_LIBFUZZER_SECONDS`` each, 20 by default). The first byte of an input is the
harness' flags (see each harness), the rest the bytes it parses.

When it finds a crash, the failure names the input file: copy it into the harness' corpus
so it stays a regression test, then fix the bug.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "shoal" / "_native"
HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("SHOAL_LIBFUZZER_SECONDS", "20"))
HARNESSES = {
    # name: (harness, the C sources it links, corpus)
    "udp": ("udp_fuzz.c", ["udp.c", "blake2b.c"], "udp_native"),
    "http": ("http_fuzz.c", ["http.c"], "http_native"),
}


@pytest.fixture(scope="module", params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fuzzer binary, its corpus)."""
    source, sources, corpus = HARNESSES[request.param]
    clang = shutil.which("clang")
    if clang is None:
        message = "clang is not installed (scripts/install-test-deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    binary = tmp_path_factory.mktemp("libfuzzer") / request.param
    subprocess.run(
        [clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
         "-fno-sanitize-recover=undefined", "-I", str(NATIVE), str(HERE / "native" / source),
         *[str(NATIVE / name) for name in sources], "-o", str(binary)],
        check=True, timeout=300,
    )
    return binary, HERE / "corpus" / corpus


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.timeout(600)
def test_every_kept_input_runs_clean(harness: tuple[Path, Path], tmp_path: Path) -> None:
    fuzzer, corpus = harness
    inputs = sorted(str(p) for p in corpus.iterdir() if p.is_file())
    assert inputs, "the corpus must not be empty"
    done = _run([str(fuzzer), *inputs], tmp_path, 300)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.timeout(SECONDS + 600)
def test_libfuzzer_finds_nothing_in_a_bounded_run(harness: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    fuzzer, corpus = harness
    work = tmp_path / "corpus"
    work.mkdir()
    done = _run(
        [str(fuzzer), f"-max_total_time={SECONDS}", "-timeout=5", "-rss_limit_mb=1024",
         "-max_len=2048", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/",
         str(work), str(corpus)],
        tmp_path, SECONDS + 300,
    )
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-",
                                                                               "timeout-", "oom-")))
    assert done.returncode == 0 and not crashes, (
        f"libFuzzer found {crashes} in {tmp_path}: copy them into {corpus} and fix the bug\n"
        + done.stderr[-4000:]
    )
