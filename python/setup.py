"""Installs the ladle package, with libladle.so built from this repository
(make) and shipped inside it. Offline: setuptools, numpy and a C compiler
come from Debian; nothing is downloaded. See README.md (Python package)."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


class BuildWithLibrary(build_py):
    """Builds build/libladle.so with the repository's Makefile and copies it
    into the package (ladle/_lib/); without the repository, the package
    uses a libladle installed by `make install`."""

    def run(self):
        super().run()
        if not os.path.exists(os.path.join(REPO, "Makefile")):
            return
        subprocess.check_call(["make", "-C", REPO, "build/libladle.so"])
        dest = os.path.join(self.build_lib, "ladle", "_lib")
        os.makedirs(dest, exist_ok=True)
        shutil.copy2(os.path.join(REPO, "build", "libladle.so"), dest)


class BinaryDistribution(Distribution):
    """The package carries a native library: a platform wheel, not py3-none-any."""

    def has_ext_modules(self):
        return True


setup(
    name="ladle",
    version="0.1.0",
    description="Weight-space model merging (model soups, task arithmetic, TIES, DARE, ...) "
                "on ladle's streaming C engine",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=["ladle"],
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={"torch": ["torch"]},
    cmdclass={"build_py": BuildWithLibrary},
    distclass=BinaryDistribution,
    zip_safe=False,
)
