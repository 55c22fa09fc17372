"""The optional compiled batch path, wgpy._fastpath (wgpy/_fastpath.c and
_fastpath_offload.c, OpenSSL's libcrypto).

Everything else is in pyproject.toml. The extension is optional: when it cannot be built
(no compiler, no Python or OpenSSL headers: `apt-get install gcc python3-dev libssl-dev`),
pip says why and installs wgpy without it, and the pure-Python path runs. WGPY_NO_EXTENSION=1
skips the build.
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure leaves the pure path
            print(f"wgpy: the compiled batch path was not built ({exc}); "
                  "the pure-Python path will run")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"wgpy: {ext.name} was not built ({exc}); the pure-Python path will run")


extensions = [] if os.environ.get("WGPY_NO_EXTENSION") == "1" else [
    Extension("wgpy._fastpath", ["wgpy/_fastpath.c", "wgpy/_fastpath_offload.c"],
              depends=["wgpy/_fastpath.h"], libraries=["crypto"],
              extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
              optional=True),
]
setup(ext_modules=extensions, cmdclass={"build_ext": OptionalBuildExt})
