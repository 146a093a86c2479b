"""The low-level binding: ctypes declarations mirroring include/ladle.h.

Nothing here computes anything; it finds libladle, declares the functions
and structs the Pythonic modules use, and turns a failed call's lad_error
into LadleError. Keep it in step with ladle.h (lad_version() is checked
against this package's version at import).
"""
import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_int,
                    c_size_t, c_uint64, c_void_p)

__version__ = "0.1.0"
MAX_DIMS = 16


class LadleError(ValueError):
    """A failed ladle operation, with the library's one-line message."""


def _candidates():
    env = os.environ.get("LADLE_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "_lib", "libladle.so")         # installed with the package
    yield os.path.join(here, "..", "..", "build", "libladle.so")  # a repository checkout
    found = ctypes.util.find_library("ladle")               # make install
    if found:
        yield found
    yield "libladle.so.0"


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError("ladle: cannot find libladle.so; build it (make), install it (make "
                      "install), or set LADLE_LIBRARY. Tried: " + "; ".join(tried))


lib = _load()

# ------------------------------------------------------------------ types

(BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32,
 F32, F64, C64, I64, U64) = range(20)
DTYPE_NAMES = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
               "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "C64", "I64", "U64"]


class Error(Structure):
    _fields_ = [("msg", c_char * 2048), ("interrupted", c_bool), ("usage", c_bool)]

    def raise_(self, exc=LadleError):
        raise exc(self.msg.decode("utf-8", "replace"))

    def set(self, message):
        """Fills the error from Python (a callback that failed)."""
        self.msg = message.encode("utf-8", "replace")[:2047]


class MemTensor(Structure):
    _fields_ = [("name", c_char_p), ("dtype", c_int), ("ndim", c_int),
                ("shape", POINTER(c_uint64)), ("data", c_void_p)]


class TensorInfo(Structure):
    _fields_ = [("name", c_char_p), ("dtype", c_int), ("ndim", c_int),
                ("shape", c_uint64 * MAX_DIMS), ("nbytes", c_uint64), ("path", c_char_p),
                ("offset", c_uint64)]


class RunStats(Structure):
    _fields_ = [("bytes_read", c_uint64), ("bytes_written", c_uint64),
                ("bytes_read_passes", c_uint64), ("seconds", c_double),
                ("nshards", c_size_t), ("nonfinite", c_uint64), ("nonfinite_tensors", c_size_t),
                ("first_nonfinite", c_char_p), ("part_shards", c_size_t),
                ("part_complete", c_bool), ("part_published", c_bool)]


class Greedy(Structure):
    _fields_ = [("n", c_size_t), ("scores", POINTER(c_double)), ("strict", c_bool),
                ("minimize", c_bool), ("next", c_void_p),  # (not told: NULL)
                ("rank", POINTER(c_size_t)), ("own", POINTER(c_double)),
                ("soup_score", POINTER(c_double)), ("accepted", POINTER(c_bool)),
                ("soup", POINTER(c_size_t)), ("nsoup", c_size_t), ("best", c_double)]


class Axis(Structure):
    _fields_ = [("name", c_char * 64), ("v", POINTER(c_double)), ("text", POINTER(c_char_p)),
                ("n", c_size_t)]


class ExtractStats(Structure):
    _fields_ = [("lora", c_size_t), ("full", c_size_t), ("biases", c_size_t),
                ("same", c_size_t), ("left_out", c_size_t), ("below_epsilon", c_size_t),
                ("rel_error", c_double), ("seconds", c_double)]


class MasksStats(Structure):
    _fields_ = [("tensors", c_size_t), ("elements", c_uint64), ("bytes", c_uint64),
                ("kept_fraction", c_double)]


PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_double, c_bool)
OPEN_FN = CFUNCTYPE(c_int, c_void_p, c_char_p, POINTER(c_void_p), POINTER(Error))
SOUP_SCORER = CFUNCTYPE(c_int, c_void_p, POINTER(POINTER(c_size_t)), POINTER(c_size_t),
                        c_size_t, POINTER(c_double), POINTER(Error))


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


E = POINTER(Error)
version = _fn("lad_version", c_char_p)
model_open = _fn("lad_model_open", c_int, c_char_p, POINTER(c_void_p), E)
model_from_memory = _fn("lad_model_from_memory", c_int, c_char_p, POINTER(MemTensor), c_size_t,
                        c_char_p, POINTER(c_void_p), E)
model_close = _fn("lad_model_close", None, c_void_p)
model_ntensors = _fn("lad_model_ntensors", c_size_t, c_void_p)
model_tensor_info = _fn("lad_model_tensor_info", None, c_void_p, c_size_t, POINTER(TensorInfo))
model_config_json = _fn("lad_model_config_json", c_void_p, c_void_p)
save = _fn("lad_save", c_int, c_void_p, c_char_p, c_char_p, c_bool, c_uint64, E)
job_parse = _fn("lad_job_parse", c_int, c_int, POINTER(c_char_p), POINTER(c_void_p), E)
job_output = _fn("lad_job_output", c_char_p, c_void_p)
job_note = _fn("lad_job_note", c_char_p, c_void_p)
job_set_progress = _fn("lad_job_set_progress", None, c_void_p, PROGRESS_FN, c_void_p)
job_plan = _fn("lad_job_plan", c_int, c_void_p, OPEN_FN, c_void_p, POINTER(c_void_p), E)
job_free = _fn("lad_job_free", None, c_void_p)
plan_free = _fn("lad_plan_free", None, c_void_p)
plan_ntensors = _fn("lad_plan_ntensors", c_size_t, c_void_p)
plan_nwarnings = _fn("lad_plan_nwarnings", c_size_t, c_void_p)
plan_warning = _fn("lad_plan_warning", c_char_p, c_void_p, c_size_t)
plan_tensor_info = _fn("lad_plan_tensor_info", None, c_void_p, c_size_t, POINTER(TensorInfo))
plan_execute = _fn("lad_plan_execute", c_int, c_void_p, POINTER(RunStats), E)
plan_execute_memory = _fn("lad_plan_execute_memory", c_int, c_void_p, POINTER(c_void_p),
                          POINTER(RunStats), E)
greedy_run = _fn("lad_greedy_run", c_int, POINTER(Greedy), SOUP_SCORER, c_void_p, E)
greedy_free = _fn("lad_greedy_free", None, POINTER(Greedy))
axis_parse = _fn("lad_axis_parse", c_int, c_char_p, POINTER(Axis), E)
axis_free = _fn("lad_axis_free", None, POINTER(Axis))
load_f32 = _fn("lad_load_f32", None, c_int, c_void_p, c_void_p, c_size_t)
store_f32 = _fn("lad_store_f32", None, c_int, c_void_p, c_void_p, c_size_t)
lora_extract_argv = _fn("lad_lora_extract_argv", c_int, c_int, POINTER(c_char_p), PROGRESS_FN,
                        c_void_p, POINTER(c_bool), POINTER(ExtractStats), E)
masks_argv = _fn("lad_masks_argv", c_int, c_int, POINTER(c_char_p), PROGRESS_FN, c_void_p,
                 POINTER(c_bool), POINTER(MasksStats), E)
libc_free = ctypes.CDLL(None).free
libc_free.argtypes = [c_void_p]
libc_free.restype = None

if version().decode() != __version__:
    raise ImportError(f"ladle: this package is {__version__} but libladle is "
                      f"{version().decode()}; rebuild one to match the other")
