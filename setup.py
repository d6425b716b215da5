"""Shoal's compiled modules; setuptools reads everything else from pyproject.toml.

Each extension is optional: when it cannot be built (no C compiler, no Python headers) the
install still succeeds and Shoal runs on its pure-Python engine, which stays the reference.
"""

from setuptools import Extension, setup

WARNINGS = ["-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-cast-function-type"]

EXTENSIONS: list[Extension] = [
    # The UDP data plane: recvmmsg/sendmmsg batches, datagram checks and connection ids in C.
    Extension(
        "shoal._native_udp",
        sources=[
            "shoal/_native/udp_module.c",
            "shoal/_native/udp.c",
            "shoal/_native/blake2b.c",
            "shoal/_native/answer.c",
            "shoal/_native/netset.c",
        ],
        depends=["shoal/_native/udp.h", "shoal/_native/blake2b.h", "shoal/_native/answer.h",
                 "shoal/_native/netset.h", "shoal/_native/store_api.h"],
        extra_compile_args=["-O2", "-std=gnu11", *WARNINGS],
        optional=True,
    ),
    # The HTTP data plane: announce and scrape requests parsed and answered in C.
    Extension(
        "shoal._native_http",
        sources=[
            "shoal/_native/http_module.c",
            "shoal/_native/http.c",
            "shoal/_native/answer.c",
            "shoal/_native/netset.c",
        ],
        depends=["shoal/_native/http.h", "shoal/_native/answer.h", "shoal/_native/netset.h",
                 "shoal/_native/store_api.h"],
        extra_compile_args=["-O2", "-std=gnu11", *WARNINGS],
        optional=True,
    ),
    # The swarm table: the in-memory store's engine, with a C API (store_api.h).
    Extension(
        "shoal._native_store",
        sources=["shoal/_native/store.c", "shoal/_native/store_module.c"],
        depends=["shoal/_native/store.h", "shoal/_native/store_api.h"],
        extra_compile_args=["-O2", "-std=c11", *WARNINGS],
        optional=True,
    ),
]

setup(ext_modules=EXTENSIONS)
