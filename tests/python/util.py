"""Shared by the package's tests: `import ladle` from python/ on the
libladle.so of the build under test ($LADLE_LIBRARY, set by tests/run),
the CLI of the same build ($LADLE), and the independent safetensors I/O of
tests/py/st.py."""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
os.environ.setdefault("LADLE_LIBRARY", os.path.join(ROOT, "build", "libladle.so"))

_spec = importlib.util.spec_from_file_location("cli_runner",
                                               os.path.join(ROOT, "tests", "py", "conftest.py"))
_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cli)
LADLE, ladle = _cli.LADLE, _cli.ladle
