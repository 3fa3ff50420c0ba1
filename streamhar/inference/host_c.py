"""The firmware's C kernels and runtime (`firmware/`), compiled for the host and called with ctypes.

`HostCEngine(model).run(x, width)` runs the C inference path (`firmware/runtime/har_net.c`) and
must equal `IntegerEngine(model).run(x, width)` bit for bit; the per-op wrappers below
(`conv1d_ternary`, `maxpool1d`, `requantize`, ...) call one C kernel each
(`firmware/kernels/har_kernels.c`) with the numpy conventions of `ops.py` (a batch axis first),
so each kernel can be tested against its reference.

The library `firmware/build/libstreamhar_host.so` is built on first use when it is missing or
older than any source under `firmware/kernels` or `firmware/runtime`, with

    gcc -std=c99 -O3 -march=native -Wall -Wextra -Werror -fPIC -shared -o libstreamhar_host.so <sources>

(`$STREAMHAR_HOST_CFLAGS` replaces `-O3 -march=native`, e.g. for a library built for another
machine) and the compiler is `$CC` when set; `make -C firmware` builds the same file. `STREAMHAR_HOST_LIB`
names a prebuilt library to load instead. A failed build is a `StreamharError` carrying the
command and the compiler's stderr.
"""
from __future__ import annotations

import ctypes as C
import os
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from streamhar.errors import StreamharError

from .model import IntegerModel
from .packing import pack_ternary, row_bytes

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
SOURCES = ("kernels/har_kernels.c", "runtime/har_net.c", "runtime/har_cascade.c", "host/har_dense.c")
HEADERS = ("kernels/har_kernels.h", "runtime/har_net.h", "runtime/har_cascade.h", "host/har_dense.h")
# -O3 -march=native: the host library is compiled on the machine that runs it (the C stays
# portable C99; the firmware builds use their own flags). $STREAMHAR_HOST_CFLAGS, when set,
# replaces "-O3 -march=native" (e.g. "-O2" for a library copied to another machine).
_OPT = tuple(os.environ.get("STREAMHAR_HOST_CFLAGS", "-O3 -march=native").split())
PORTABLE_OPT = ("-O2",)       # the compiler's baseline target: no AVX2, the portable C paths
_FLAGS = ("-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")
CFLAGS = ("-std=c99", *_OPT, *_FLAGS)
LIB_NAME = "libstreamhar_host.so"

HAR_IN_S8, HAR_IN_U8 = 0, 1
_ERRORS = {-1: "width index out of range", -2: "inconsistent network description",
           -3: "scratch buffers too small"}

_lock = threading.Lock()
_lib: C.CDLL | None = None


class HostCError(StreamharError):
    """The host C library could not be built or loaded, or a C call refused its arguments."""


# ---------------------------------------------------------------------------------- building

def library_path(build_dir: Path | None = None) -> Path:
    return (build_dir or FIRMWARE / "build") / LIB_NAME


def compile_command(out: Path, cc: str | None = None, opt: tuple[str, ...] | None = None) -> list[str]:
    cc = cc or os.environ.get("CC") or "gcc"
    flags = CFLAGS if opt is None else ("-std=c99", *opt, *_FLAGS)
    return [*shlex.split(cc), *flags, "-o", str(out), *(str(FIRMWARE / s) for s in SOURCES)]


def build_library(build_dir: Path | None = None, force: bool = False, opt: tuple[str, ...] | None = None) -> Path:
    """Compile the library unless it exists and is newer than every source and header.
    `opt` replaces the optimisation flags (e.g. PORTABLE_OPT: a build without SIMD)."""
    lib = library_path(build_dir)
    inputs = [FIRMWARE / p for p in (*SOURCES, *HEADERS)]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise HostCError(f"host C library: sources missing: {', '.join(missing)}")
    newest = max(p.stat().st_mtime for p in inputs)
    # The command is recorded beside the library: new flags (or compiler) mean a rebuild too.
    stamp = lib.with_name(lib.name + ".cmd")
    wanted = shlex.join(compile_command(lib, opt=opt))
    current = stamp.read_text() if stamp.exists() else ""
    if not force and lib.exists() and lib.stat().st_mtime >= newest and current == wanted:
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name, then rename: concurrent builders never load a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=lib.parent)
    os.close(fd)
    cmd = compile_command(Path(tmp), opt=opt)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        os.unlink(tmp)
        raise HostCError(f"host C library: cannot run the compiler ({shlex.join(cmd)}): {e}") from None
    if proc.returncode != 0:
        os.unlink(tmp)
        raise HostCError(f"host C library: compilation failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
                         f"{proc.stderr.strip()}")
    os.replace(tmp, lib)
    stamp.write_text(wanted)
    return lib


def _declare(lib: C.CDLL) -> C.CDLL:
    p, sz, i32, u32, i64 = C.c_void_p, C.c_size_t, C.c_int32, C.c_uint32, C.c_int64
    sigs = {
        "har_row_bytes": (sz, [sz, sz]),
        "conv1d_ternary": (sz, [p, C.c_int, sz, sz, p, sz, sz, sz, sz, p]),
        "maxpool1d": (sz, [p, sz, sz, sz, p]),
        "requantize": (None, [p, sz, sz, p, p, p, i32, i32, p]),
        "global_sum_pool": (None, [p, sz, sz, p]),
        "fc_int8": (None, [p, sz, p, sz, sz, p]),
        "requantize_logits": (None, [p, sz, p, p, p, p]),
        "argmax_margin": (sz, [p, sz, C.POINTER(i64)]),
        "quantize_raw_i16": (None, [p, sz, sz, p, p, p, p, sz]),
        "har_net_scratch_size": (C.c_int, [C.POINTER(HarNet), C.POINTER(sz), C.POINTER(sz)]),
        "har_net_run": (C.c_int, [C.POINTER(HarNet), u32, p, C.POINTER(HarScratch), p]),
        "har_net_run_batch": (C.c_int, [C.POINTER(HarNet), u32, p, sz, C.POINTER(HarScratch), p]),
        "har_net_scratch_min": (C.c_int, [C.POINTER(HarNet), C.POINTER(sz), C.POINTER(sz)]),
        "har_net_run_traced": (C.c_int, [C.POINTER(HarNet), u32, p, C.POINTER(HarScratch), p, p]),
        "har_layer_checksum": (u32, [p, sz]),
        "har_cascade_run": (C.c_int, [C.POINTER(HarNet), C.POINTER(HarCascade), p, C.POINTER(HarScratch), p,
                                      C.POINTER(HarCascadeResult)]),
        "har_dense_weights_len": (sz, [C.POINTER(HarNet), u32]),
        "har_dense_decode": (C.c_int, [C.POINTER(HarNet), u32, p, sz]),
        "har_dense_work_len": (sz, [C.POINTER(HarNet)]),
        "har_dense_run_batch": (C.c_int, [C.POINTER(HarNet), u32, p, sz, p, sz, p, sz, p]),
        "har_dense_simd": (C.c_char_p, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def load_library(path: Path | None = None) -> C.CDLL:
    """The loaded library (built first if needed); one load per process. With `path`, that
    library file, loaded on its own (e.g. a portable build beside the native one)."""
    global _lib
    if path is not None:
        try:
            return _declare(C.CDLL(str(path)))
        except (OSError, AttributeError) as e:
            raise HostCError(f"host C library: cannot load {path}: {e}") from None
    with _lock:
        if _lib is None:
            path = os.environ.get("STREAMHAR_HOST_LIB")
            path = Path(path) if path else build_library()
            try:
                _lib = _declare(C.CDLL(str(path)))
            except (OSError, AttributeError) as e:
                raise HostCError(f"host C library: cannot load {path}: {e}") from None
        return _lib


# ---------------------------------------------------------------------------------- structs

class HarRequant(C.Structure):
    _fields_ = [("m", C.c_void_p), ("shift", C.c_void_p), ("bias", C.c_void_p)]


class HarNet(C.Structure):
    _fields_ = [("n_blocks", C.c_uint32), ("in_channels", C.c_uint32), ("window", C.c_uint32),
                ("n_classes", C.c_uint32), ("n_widths", C.c_uint32),
                ("channels", C.c_void_p), ("kernels", C.c_void_p), ("pools", C.c_void_p),
                ("padding", C.c_void_p), ("act_levels", C.c_void_p), ("conv", C.c_void_p),
                ("fc", C.c_void_p), ("width_channels", C.c_void_p), ("requant", C.c_void_p),
                ("fc_requant", C.c_void_p)]


class HarScratch(C.Structure):
    _fields_ = [("act", C.c_void_p * 2), ("act_len", C.c_size_t), ("acc", C.c_void_p), ("acc_len", C.c_size_t)]


class HarCascade(C.Structure):
    _fields_ = [("small", C.c_uint32), ("full", C.c_uint32), ("threshold", C.c_int64)]


class HarCascadeResult(C.Structure):
    _fields_ = [("cls", C.c_uint32), ("path", C.c_uint32), ("margin", C.c_int64), ("full_margin", C.c_int64)]


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _arr(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


# ---------------------------------------------------------------------------------- engine

class HostCEngine:
    """The integer network run by the C runtime (`har_net_run_batch`); same interface as
    `IntegerEngine.run`. Weights are packed once (`packing.pack_ternary`, the `.shm` layout) and
    every table is handed to C as a pointer into a numpy buffer this object keeps alive."""

    def __init__(self, model: IntegerModel, name: str = "", dense: bool = True, lib: C.CDLL | None = None,
                 acc_len: int | None = None):
        """dense=True runs `har_dense_run_batch` (firmware/host/har_dense.c: int16 weight pairs decoded
        once per width, time-major activations, SIMD multiply-adds: the fast host path); dense=False
        runs `har_net_run_batch`, the firmware's packed path (`conv1d_ternary` on the 2-bit rows).
        Both equal `IntegerEngine` bit for bit. `lib`: a library from `load_library(path)`. `acc_len`:
        the packed path's accumulator elements (default: a whole block at once); down to
        `har_net_scratch_min`'s, it computes output channels in tiles as the firmware does."""
        self.model = model
        self.dense = dense
        self.name = name or model.info.get("source", {}).get("bundle") or "the integer model"
        self.lib = lib or load_library()
        a, info = model.arch, model.info
        u32 = lambda v: _arr(v, np.uint32)
        keep: list = []                                    # every buffer C points into
        self._channels, self._kernels = u32(a["channels"]), u32(a["kernels"])
        self._pools, self._padding, self._levels = u32(a["pools"]), u32(a["padding"]), u32(a["act_levels"])
        self._packed = [np.ascontiguousarray(pack_ternary(w)) for w in model.conv]
        for w, p in zip(model.conv, self._packed):
            assert p.shape[1] == row_bytes(w.shape)
        self._conv_ptrs = (C.c_void_p * len(self._packed))(*[_ptr(p) for p in self._packed])
        self._fc = _arr(model.fc, np.int8)
        self._width_channels = u32(info["width_channels"]).reshape(-1)
        n_blocks, n_widths = len(a["channels"]), len(info["widths"])

        def table(r) -> HarRequant:
            m, s, b = _arr(r.m, np.int32), _arr(r.shift, np.int32), _arr(r.bias, np.int64)
            keep.extend((m, s, b))
            return HarRequant(_ptr(m), _ptr(s), _ptr(b))

        self._requant = (HarRequant * (n_widths * n_blocks))(*[table(r) for tabs in model.requant for r in tabs])
        self._fc_requant = (HarRequant * n_widths)(*[table(r) for r in model.fc_requant])
        self._keep = keep
        self.net = HarNet(n_blocks, a["in_channels"], a["window"], a["n_classes"], n_widths,
                          _ptr(self._channels), _ptr(self._kernels), _ptr(self._pools), _ptr(self._padding),
                          _ptr(self._levels), C.addressof(self._conv_ptrs), _ptr(self._fc),
                          _ptr(self._width_channels), C.addressof(self._requant), C.addressof(self._fc_requant))
        wanted_acc = acc_len
        act_len, acc_len = C.c_size_t(), C.c_size_t()
        rc = self.lib.har_net_scratch_size(C.byref(self.net), C.byref(act_len), C.byref(acc_len))
        if rc != 0:
            raise HostCError(f"{self.name}: har_net_scratch_size: {_ERRORS.get(rc, rc)}")
        if wanted_acc is not None:
            acc_len = C.c_size_t(wanted_acc)
        self._act = [np.zeros(act_len.value, np.uint8) for _ in range(2)]
        self._acc = np.zeros(acc_len.value, np.int32)
        self.scratch = HarScratch((C.c_void_p * 2)(_ptr(self._act[0]), _ptr(self._act[1])), act_len.value,
                                  _ptr(self._acc), acc_len.value)
        self._run_lock = threading.Lock()                  # one scratch set per engine
        # Dense fast path (har_dense_run_batch): int16 weights decoded once per width (on first
        # use), one int32 work buffer; same results as har_net_run_batch bit for bit.
        work_len = int(self.lib.har_dense_work_len(C.byref(self.net)))
        if work_len == 0:
            raise HostCError(f"{self.name}: har_dense_work_len: inconsistent network description")
        self._work = np.zeros(work_len, np.int32)
        self._dense: dict[int, np.ndarray] = {}
        # One-window calls (the streaming case) skip per-call pointer lookups: the window is copied
        # into a fixed buffer, and every pointer handed to C is computed once here.
        c, length = self.input_shape
        self._x1, self._out1 = np.zeros((1, c, length), np.int8), np.zeros((1, a["n_classes"]), np.int32)
        self._net_ref = C.byref(self.net)
        self._ptrs = {"work": _ptr(self._work), "x1": _ptr(self._x1), "out1": _ptr(self._out1)}
        self._widths = {w: i for i, w in enumerate(model.widths)}

    def _dense_weights(self, wi: int) -> np.ndarray:
        w = self._dense.get(wi)
        if w is None:
            n = int(self.lib.har_dense_weights_len(C.byref(self.net), wi))
            w = np.zeros(max(n, 1), np.uint8)
            rc = self.lib.har_dense_decode(C.byref(self.net), wi, _ptr(w), n)
            if n == 0 or rc != 0:
                raise HostCError(f"{self.name}: har_dense_decode: {_ERRORS.get(rc, rc)}")
            self._dense[wi] = w
            self._ptrs[wi] = _ptr(w)
        return w

    @property
    def simd(self) -> str:
        """"avx2" or "portable": how this library's dense path multiplies."""
        return self.lib.har_dense_simd().decode()

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.model.arch["in_channels"], self.model.arch["window"]

    @property
    def scratch_sizes(self) -> tuple[int, int]:
        """(elements of each uint8 activation buffer, elements of the int32 accumulator buffer)."""
        return self.scratch.act_len, self.scratch.acc_len

    def run(self, x: np.ndarray, width: float = 1.0) -> np.ndarray:
        """int8 windows [N, C, L] or [C, L] → int32 logits [N, K] or [K], as `IntegerEngine.run`."""
        c, length = self.input_shape
        x = np.asarray(x)
        if x.dtype != np.int8 or x.ndim not in (2, 3) or x.shape[-2:] != (c, length) or x.size == 0:
            raise StreamharError(f"expected int8 windows of shape [N, {c}, {length}] (or one [{c}, {length}]) "
                                 f"for {self.name}, got {x.dtype} {list(x.shape)}")
        wi = self._widths.get(width)
        if wi is None:
            wi = self.model.width_index(width)                 # raises the clear error
        single = x.ndim == 2
        n = 1 if single else x.shape[0]
        with self._run_lock:
            if self.dense and n == 1:
                w = self._dense_weights(wi)
                self._x1[0] = x if single else x[0]
                rc = self.lib.har_dense_run_batch(self._net_ref, wi, self._ptrs[wi], w.size, self._ptrs["work"],
                                                  self._work.size, self._ptrs["x1"], 1, self._ptrs["out1"])
                logits = self._out1.copy()
            else:
                xb = np.ascontiguousarray(x[None] if single else x)
                logits = np.empty((n, self.model.arch["n_classes"]), np.int32)
                if self.dense:
                    w = self._dense_weights(wi)
                    rc = self.lib.har_dense_run_batch(self._net_ref, wi, self._ptrs[wi], w.size, self._ptrs["work"],
                                                      self._work.size, _ptr(xb), n, _ptr(logits))
                else:
                    rc = self.lib.har_net_run_batch(self._net_ref, wi, _ptr(xb), n, C.byref(self.scratch),
                                                    _ptr(logits))
        if rc != 0:
            raise HostCError(f"{self.name}: har_net_run: {_ERRORS.get(rc, rc)}")
        return logits[0] if single else logits

    def classify(self, x: np.ndarray, width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        return argmax_margin(self.run(x, width))

    def _one(self, x: np.ndarray) -> np.ndarray:
        c, length = self.input_shape
        x = np.ascontiguousarray(x)
        if x.dtype != np.int8 or x.shape != (c, length):
            raise StreamharError(f"expected one int8 window [{c}, {length}] for {self.name}, got {x.dtype} "
                                 f"{list(x.shape)}")
        return x

    def trace(self, x: np.ndarray, width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The firmware's path on one window: (int32 logits [K], uint32 per-block checksums
        `har_layer_checksum` [n_blocks]) from `har_net_run_traced`."""
        x = self._one(x)
        logits = np.zeros(self.model.arch["n_classes"], np.int32)
        trace = np.zeros(len(self.model.arch["channels"]), np.uint32)
        with self._run_lock:
            rc = self.lib.har_net_run_traced(self._net_ref, self.model.width_index(width), _ptr(x),
                                             C.byref(self.scratch), _ptr(logits), _ptr(trace))
        if rc != 0:
            raise HostCError(f"{self.name}: har_net_run_traced: {_ERRORS.get(rc, rc)}")
        return logits, trace

    def cascade(self, x: np.ndarray, small: float, full: float, threshold: int) -> tuple[int, int, int, np.ndarray]:
        """The firmware's cascade (`har_cascade_run`) on one window: (class, path 0 narrow / 1 full,
        the narrow margin, the committing width's logits)."""
        x = self._one(x)
        logits = np.zeros(self.model.arch["n_classes"], np.int32)
        c = HarCascade(self.model.width_index(small), self.model.width_index(full), int(threshold))
        r = HarCascadeResult()
        with self._run_lock:
            rc = self.lib.har_cascade_run(self._net_ref, C.byref(c), _ptr(x), C.byref(self.scratch), _ptr(logits),
                                          C.byref(r))
        if rc != 0:
            raise HostCError(f"{self.name}: har_cascade_run: {_ERRORS.get(rc, rc)}")
        return int(r.cls), int(r.path), int(r.margin), logits


# ---------------------------------------------------------------------------------- per-op wrappers
# numpy in, numpy out, a batch axis first like ops.py; each calls its C kernel once per window.

def _input(x: np.ndarray) -> tuple[np.ndarray, int]:
    x = np.asarray(x)
    if x.dtype == np.int8:
        return np.ascontiguousarray(x), HAR_IN_S8
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x), HAR_IN_U8
    raise HostCError(f"conv1d_ternary: the C kernel reads int8 or uint8 codes, got {x.dtype}")


def conv1d_ternary_packed(x: np.ndarray, packed: np.ndarray, k: int, padding: int, n_out: int | None = None
                          ) -> np.ndarray:
    """x int8/uint8 [B, n_in, T]; packed uint8 [O, R] (rows of a tensor with >= n_in input
    channels: the kernel reads the codes of the first n_in); the first n_out rows (default O)."""
    lib = load_library()
    x, kind = _input(x)
    packed = _arr(packed, np.uint8)
    b, n_in, t_in = x.shape
    n_out = packed.shape[0] if n_out is None else n_out
    if n_out > packed.shape[0] or n_in * k > packed.shape[1] * 4:
        raise HostCError(f"conv1d_ternary: slice [{n_out}, {n_in}·{k}] exceeds packed rows {list(packed.shape)}")
    t_out = max(t_in + 2 * padding - k + 1, 0)
    out = np.zeros((b, n_out, t_out), np.int32)
    for i in range(b):
        lib.conv1d_ternary(_ptr(x[i]), kind, n_in, t_in, _ptr(packed), packed.shape[1], n_out, k, padding,
                           _ptr(out[i]))
    return out


def conv1d_ternary(x: np.ndarray, codes: np.ndarray, padding: int) -> np.ndarray:
    """Same call as `ops.conv1d_ternary` (codes int8 [Cout, Cin, K]), packed first."""
    codes = np.asarray(codes)
    if codes.shape[1] != np.asarray(x).shape[1]:
        raise ValueError(f"conv1d_ternary: input has {np.asarray(x).shape[1]} channels, weights expect {codes.shape[1]}")
    return conv1d_ternary_packed(x, pack_ternary(codes), codes.shape[2], padding)


def maxpool1d(acc: np.ndarray, pool: int) -> np.ndarray:
    lib = load_library()
    acc = _arr(acc, np.int32)
    b, c, t = acc.shape
    out = np.empty((b, c, t // pool), np.int32)
    for i in range(b):
        lib.maxpool1d(_ptr(acc[i]), c, t, pool, _ptr(out[i]))
    return out


def _tables(c: int, m, shift, bias) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (_arr(np.broadcast_to(np.asarray(m), (c,)), np.int32), _arr(np.broadcast_to(np.asarray(shift), (c,)), np.int32),
            _arr(np.broadcast_to(np.asarray(bias), (c,)), np.int64))


def requantize(acc: np.ndarray, m, shift, bias, lo: int, hi: int) -> np.ndarray:
    """acc [B, C, T] or [B, C] → uint8 codes; [lo, hi] must lie in 0..255 (the C kernel's range)."""
    if not (0 <= lo and hi <= 255):
        raise HostCError(f"requantize: the C kernel writes uint8 codes, [lo, hi] = [{lo}, {hi}] does not fit")
    lib = load_library()
    acc = _arr(acc, np.int32)
    flat = acc.reshape(acc.shape[0], acc.shape[1], -1)
    b, c, t = flat.shape
    m, s, bi = _tables(c, m, shift, bias)
    out = np.empty(flat.shape, np.uint8)
    for i in range(b):
        lib.requantize(_ptr(flat[i]), c, t, _ptr(m), _ptr(s), _ptr(bi), lo, hi, _ptr(out[i]))
    return out.reshape(acc.shape)


def global_sum_pool(x: np.ndarray) -> np.ndarray:
    lib = load_library()
    x = _arr(x, np.uint8)
    b, c, t = x.shape
    out = np.empty((b, c), np.int32)
    for i in range(b):
        lib.global_sum_pool(_ptr(x[i]), c, t, _ptr(out[i]))
    return out


def fc_int8(features: np.ndarray, codes: np.ndarray, n_feat: int | None = None) -> np.ndarray:
    """features int32 [B, n_feat]; codes int8 [K, C_full] of which the first n_feat columns are used."""
    lib = load_library()
    features, codes = _arr(features, np.int32), _arr(codes, np.int8)
    b, n = features.shape
    if n > codes.shape[1]:
        raise ValueError(f"fc_int8: {n} features, weights have {codes.shape[1]} columns")
    out = np.empty((b, codes.shape[0]), np.int32)
    for i in range(b):
        lib.fc_int8(_ptr(features[i]), n, _ptr(codes), codes.shape[1], codes.shape[0], _ptr(out[i]))
    return out


def requantize_logits(acc: np.ndarray, m, shift, bias) -> np.ndarray:
    lib = load_library()
    acc = _arr(acc, np.int32)
    b, k = acc.shape
    m, s, bi = _tables(k, m, shift, bias)
    out = np.empty((b, k), np.int32)
    for i in range(b):
        lib.requantize_logits(_ptr(acc[i]), k, _ptr(m), _ptr(s), _ptr(bi), _ptr(out[i]))
    return out


def argmax_margin(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class index int64, margin int64) per row of int32 logits [B, K] (or [K])."""
    lib = load_library()
    z = _arr(logits, np.int32)
    if z.shape[-1] < 2:
        raise ValueError("argmax_margin needs at least two classes")
    flat = z.reshape(-1, z.shape[-1])
    cls = np.empty(flat.shape[0], np.int64)
    margin = np.empty(flat.shape[0], np.int64)
    mg = C.c_int64()
    for i in range(flat.shape[0]):
        cls[i] = lib.argmax_margin(_ptr(flat[i]), flat.shape[1], C.byref(mg))
        margin[i] = mg.value
    return cls.reshape(z.shape[:-1]), margin.reshape(z.shape[:-1])


def quantize_raw_i16(raw: np.ndarray, m, shift, bias) -> np.ndarray:
    """Same call as `ops.quantize_raw_i16`: int16 [B, n, C] (or [n, C]) → int8 [B, C, n] (or [C, n]);
    the C kernel runs once per batch item, writing each channel-major row with stride n."""
    lib = load_library()
    raw = _arr(raw, np.int16)
    single = raw.ndim == 2
    batch = raw[None] if single else raw
    b, n, c = batch.shape
    m, s, bi = _tables(c, m, shift, bias)
    out = np.empty((b, c, n), np.int8)
    for i in range(b):
        lib.quantize_raw_i16(_ptr(batch[i]), n, c, _ptr(m), _ptr(s), _ptr(bi), _ptr(out[i]), n)
    return out[0] if single else out
