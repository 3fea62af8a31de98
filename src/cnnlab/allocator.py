"""The process's memory as the operating system sees it: the C allocator's policy, set once at
start-up, and the resident set size (RSS).

PyTorch's CPU tensors come from ``malloc``. glibc's ``malloc`` serves a block above its *mmap
threshold* with a fresh ``mmap``, unmapped on ``free`` (the next such block faults its pages in again),
and a smaller one from its heap, which keeps freed memory for reuse. The threshold starts at 128 KiB
and rises to the size of every mmapped block freed (up to 32 MiB), so after the first step most
activations come from the heap, whose free holes the process keeps: a training step's RSS grows by up
to twice its tensors' bytes. No glibc setting gives both: returning every block (a low threshold) makes
the RSS follow the tensors but costs page faults every step; keeping every block is fastest
(docs/BENCHMARKS.md, "The C allocator", measured by benchmarks/bench_allocator.py).

:func:`apply` sets the policy of cnnlab's own processes -- the ``cnnlab`` command calls it first, before
torch is imported -- through ``mallopt`` (ctypes; glibc only, nothing is changed on macOS, musl or under a
preloaded jemalloc or tcmalloc). ``CNNLAB_MALLOC`` chooses it: ``fast`` (the default, no slower than
glibc's own), ``lean``, ``default`` (glibc's own) or mallopt settings such as
``mmap_threshold=65536,arena_max=2``. ``tcmalloc`` and ``jemalloc`` replace glibc's malloc where the
system has the library (Debian: ``libtcmalloc-minimal4``, ``libjemalloc2``): the ``cnnlab`` command then
starts itself again with the library in ``LD_PRELOAD`` (:func:`exec_preloaded`, before anything is
computed); where it is missing, glibc's own settings stay and the state says why. A user's own
``MALLOC_*_`` variables or ``GLIBC_TUNABLES`` malloc tunables win: then nothing is set. :func:`rss_bytes`
and :func:`peak_rss_bytes` read the process's RSS. Importing this module loads no torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV", "POLICIES", "PRELOADS", "DEFAULT_POLICY", "AllocatorState", "apply", "state", "parse_policy",
           "preload_library", "exec_preloaded",
           "mmapped_bytes", "serves_by_mmap", "rss_bytes", "peak_rss_bytes", "reset_peak_rss"]

ENV = "CNNLAB_MALLOC"

# mallopt parameters (malloc.h)
_PARAMS = {"trim_threshold": -1, "top_pad": -2, "mmap_threshold": -3, "mmap_max": -4, "arena_test": -7,
           "arena_max": -8}
# the environment variables glibc reads for the same settings: a user who set one has chosen
_USER_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_",
              "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST")

POLICIES: dict[str, dict[str, int]] = {
    # glibc's own: mmap threshold 128 KiB, raised by every larger mmapped block freed (up to 32 MiB)
    "default": {},
    # freed memory stays with the process for the next step: no block is mmapped (no page faults to
    # map it again), the heap's top is given back only beyond 1 GiB free
    "fast": {"mmap_max": 0, "trim_threshold": 1 << 30},
    # every block from 64 KiB up is its own mmap, given back to the system on free: the RSS follows the
    # tensors (with torch's transparent huge pages, where the kernel offers them, for fewer page faults)
    "lean": {"mmap_threshold": 64 << 10},
}
# another malloc, loaded by the dynamic linker before the C library's (LD_PRELOAD): policy -> library names
# (ctypes.util.find_library's) in order of preference; tcmalloc's "minimal" build is the allocator alone
PRELOADS: dict[str, tuple[str, ...]] = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
_EXEC_MARK = "CNNLAB_MALLOC_EXEC"  # set in the re-executed process: never start again (a library that fails to load)
DEFAULT_POLICY = "fast"  # no slower than glibc's own (faster), docs/BENCHMARKS.md "The C allocator"
THP_ENV = "THP_MEM_ALLOC_ENABLE"  # torch: madvise(MADV_HUGEPAGE) on CPU tensors of 2 MiB and more


@dataclass(frozen=True)
class AllocatorState:
    """Which ``malloc`` this process runs and the policy cnnlab set on it."""

    allocator: str  # "glibc 2.36", "jemalloc (preloaded)", "tcmalloc (preloaded)", or the platform's
    policy: str  # the policy's name (or settings) when ``applied``; else what was asked for
    settings: dict[str, int]  # the mallopt parameters set (empty when none)
    applied: bool  # mallopt was called and accepted every setting
    reason: str = ""  # why nothing was set, where nothing was
    huge_pages: bool = False  # torch was told to madvise transparent huge pages (THP_MEM_ALLOC_ENABLE)

    @property
    def name(self) -> str:
        """The policy in effect: ``fast``, ``lean``, settings text, or ``default`` when nothing was set."""
        return self.policy if self.applied else "default"

    def describe(self) -> str:
        """One phrase: ``glibc 2.36 malloc, policy fast: mmap max 0, trim threshold 1 GiB (CNNLAB_MALLOC)``."""
        if self.applied:
            parts = ", ".join(f"{k.replace('_', ' ')} {_size(v) if 'threshold' in k or k == 'top_pad' else v}"
                              for k, v in self.settings.items())
            thp = ", transparent huge pages" if self.huge_pages else ""
            if not self.settings:  # a preloaded malloc, asked for by name
                return f"{self.allocator} malloc, policy {self.policy} ({ENV})"
            return f"{self.allocator} malloc, policy {self.policy}: {parts}{thp} ({ENV})"
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.allocator} malloc, its own settings{why}"

    def to_dict(self) -> dict:
        return {"allocator": self.allocator, "policy": self.name, "settings": dict(self.settings),
                "applied": self.applied, "reason": self.reason, "huge_pages": self.huge_pages,
                "describe": self.describe()}


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


_STATE: AllocatorState | None = None


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover - platforms without dlopen(NULL)
        return None


def _glibc_version(libc) -> str | None:
    fn = getattr(libc, "gnu_get_libc_version", None) if libc is not None else None
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def _preloaded() -> str | None:
    """``jemalloc`` or ``tcmalloc`` when one of them is mapped into this process (LD_PRELOAD)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for name in ("jemalloc", "tcmalloc"):
        if name in maps:
            return name
    return None


def _allocator() -> tuple[str, bool]:
    """(what malloc this process runs, whether it is glibc's)."""
    version = _glibc_version(_libc())
    other = _preloaded()
    if other:
        return f"{other} (preloaded)", False
    if version:
        return f"glibc {version}", True
    return {"darwin": "macOS"}.get(sys.platform, "the C library's"), False


def _thp_available() -> bool:
    """Whether the kernel gives transparent huge pages to memory that asks for them."""
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def parse_policy(text: str) -> tuple[str, dict[str, int]]:
    """``lean`` -> ("lean", {"mmap_threshold": 65536}); ``mmap_threshold=1048576,arena_max=2`` -> that text
    and those settings (mallopt's parameters: trim_threshold, top_pad, mmap_threshold, mmap_max,
    arena_test, arena_max). An unknown name or parameter raises ValueError."""
    text = text.strip()
    if text in POLICIES:
        return text, dict(POLICIES[text])
    if text in PRELOADS:
        return text, {}
    settings = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _PARAMS:
            raise ValueError(f"{ENV}={text!r} is not a policy: use {', '.join([*POLICIES, *PRELOADS])}, or mallopt "
                             f"settings such as mmap_threshold=65536 ({', '.join(_PARAMS)})")
        try:
            settings[key] = int(value.strip(), 0)
        except ValueError:
            raise ValueError(f"{ENV}={text!r}: {key} takes a whole number") from None
    if not settings:
        raise ValueError(f"{ENV}={text!r} is not a policy: use {', '.join([*POLICIES, *PRELOADS])}")
    return text, settings


def _user_choice(environ) -> str | None:
    """The first of the user's own malloc settings in ``environ``, if any."""
    for var in _USER_VARS:
        if var in environ:
            return var
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def apply(policy: str | None = None, environ=None) -> AllocatorState:
    """Set the allocator policy of this process, once: later calls return the first call's state.

    ``policy``: a name of :data:`POLICIES` or ``key=value,...`` mallopt settings; None reads
    ``CNNLAB_MALLOC`` and falls back to :data:`DEFAULT_POLICY`. Nothing is set on a C library other
    than glibc, under a preloaded jemalloc or tcmalloc, or where the user's environment already sets
    glibc's malloc (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``). An invalid ``CNNLAB_MALLOC`` leaves
    glibc's settings alone (the state's reason says why) rather than stopping the command. Call it
    before torch allocates: blocks the heap already holds stay where they are.
    """
    global _STATE
    if _STATE is None:
        _STATE = _apply(policy, os.environ if environ is None else environ)
    return _STATE


def _apply(policy: str | None, environ) -> AllocatorState:
    asked = policy if policy is not None else environ.get(ENV, "").strip() or DEFAULT_POLICY
    allocator, glibc = _allocator()
    try:
        name, settings = parse_policy(asked)
    except ValueError as exc:
        return AllocatorState(allocator, asked, {}, False, str(exc))
    user = _user_choice(environ)
    if name in PRELOADS:
        return _preload_state(allocator, name, environ)
    if not settings:
        return AllocatorState(allocator, name, {}, False, f"{ENV}={asked}" if ENV in environ else "")
    if not glibc:
        return AllocatorState(allocator, name, {}, False, "cnnlab sets glibc's malloc only")
    if user:
        return AllocatorState(allocator, name, {}, False, f"{user} is set in the environment")
    mallopt = _libc().mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = all(mallopt(_PARAMS[k], v) == 1 for k, v in settings.items())
    # small mmap thresholds fault fresh pages every step: torch's huge pages make that 512x fewer faults
    # (torch reads the variable on its first allocation, so only before torch is imported)
    thp = False
    if ok and 0 < settings.get("mmap_threshold", 1 << 30) <= 2 << 20 and _thp_available() \
            and "torch" not in sys.modules:
        if THP_ENV not in environ:
            environ[THP_ENV] = "1"
        thp = environ.get(THP_ENV) == "1"
    return AllocatorState(allocator, name, settings, ok, "" if ok else "mallopt refused a setting", thp)


def preload_library(name: str) -> str | None:
    """The library the dynamic linker would load for ``tcmalloc`` or ``jemalloc`` (its soname, e.g.
    ``libtcmalloc_minimal.so.4``), or None where the system has none."""
    return next(filter(None, (ctypes.util.find_library(lib) for lib in PRELOADS[name])), None)


def _preload_state(allocator: str, name: str, environ) -> AllocatorState:
    other = _preloaded()
    if other == name:
        return AllocatorState(allocator, name, {}, True)
    if other is not None:
        why = f"{other} is preloaded already"
    elif not sys.platform.startswith("linux"):
        why = f"{name} is preloaded by the cnnlab command on Linux only"
    elif preload_library(name) is None:
        package = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}[name]
        why = f"{name} is not installed (Debian/Ubuntu: apt install {package})"
    elif environ.get(_EXEC_MARK):
        why = f"{name} was put in LD_PRELOAD but did not load"
    else:
        why = f"{name} is loaded when the cnnlab command starts (LD_PRELOAD), not in this process"
    return AllocatorState(allocator, name, {}, False, why)


def exec_preloaded(environ=None) -> None:
    """Where ``CNNLAB_MALLOC`` is ``tcmalloc`` or ``jemalloc``, the library is installed and not yet loaded:
    replace this process by the same command with the library first in ``LD_PRELOAD`` (``os.execve``;
    the pid, open files and terminal stay). Returns, having done nothing, in every other case -- so call
    it first, before any output or work. Linux only."""
    environ = os.environ if environ is None else environ
    name = environ.get(ENV, "").strip()
    if name not in PRELOADS or environ.get(_EXEC_MARK) or not sys.platform.startswith("linux") \
            or _preloaded() is not None:
        return
    library = preload_library(name)
    if library is None:
        return
    env = {**environ, _EXEC_MARK: "1",
           "LD_PRELOAD": " ".join(filter(None, (library, environ.get("LD_PRELOAD", "").strip())))}
    if name == "tcmalloc":  # it writes a line to stderr for every block over 1 GiB (a decoded dataset): not asked for
        env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 62))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def state() -> AllocatorState:
    """The policy in effect: what :func:`apply` set in this process, or the C library's own settings."""
    if _STATE is not None:
        return _STATE
    return AllocatorState(_allocator()[0], "default", {}, False, "not set by cnnlab in this process")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def mmapped_bytes() -> int | None:
    """Bytes glibc's malloc holds in mmapped blocks now (``mallinfo2().hblkhd``); None off glibc 2.33+."""
    libc = _libc()
    fn = getattr(libc, "mallinfo2", None) if libc is not None and not _preloaded() else None
    if fn is None:
        return None
    fn.restype = _MallInfo2
    return int(fn().hblkhd)


def serves_by_mmap(size: int = 96 << 10) -> bool | None:
    """Whether a ``malloc(size)`` now is served by its own mmap (given back on free): the probe of
    the policy in effect (96 KiB: below glibc's initial threshold of 128 KiB, above cnnlab's 64 KiB).
    None where it cannot be told (not glibc 2.33+)."""
    before = mmapped_bytes()
    if before is None:
        return None
    libc = _libc()
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    block = libc.malloc(size)
    try:
        return (mmapped_bytes() or 0) - before >= size
    finally:
        libc.free(block)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes() -> int | None:
    """This process's resident memory now (VmRSS), or None where /proc is missing."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib << 10


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM: since start, or since :func:`reset_peak_rss`)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib << 10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak if sys.platform == "darwin" else peak << 10


def reset_peak_rss() -> bool:
    """Reset the peak of :func:`peak_rss_bytes` to the current RSS (Linux: ``/proc/self/clear_refs``);
    False where it cannot be reset (the peak then counts from the start of the process)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
