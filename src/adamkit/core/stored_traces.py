"""Configurations traced in an earlier process, kept on disk beside inductor's cache.

Inductor keeps its compiled kernels on disk, but Dynamo traces a configuration's chunk body
again in every process, and that tracing is most of a first step once the kernels are cached:
0.7-1.9 s per configuration of 8-bit state on the GPT-like set, mostly fake-tensor propagation
over symbolic sizes (issue 5's closing notes of session 26). torch's ahead-of-time capture
(``torch.compile(...).aot_compile``, torch 2.10 and later) serialises what Dynamo produced: the
compiled graph, the code that feeds it and the guards on its inputs. A configuration whose
trace is stored is served in a later process by that graph, after its guards have passed on
the call's tensors, without tracing.

What a stored trace is keyed on (:func:`trace_key`): everything its tracing read that a guard
does not check. The configuration's bindings (rule, codecs, static values, names), which must
all come from adamkit itself (a user's rule or codec could change without adamkit knowing, so
its configurations are traced in every process, as before); the text of adamkit's source
files; torch's version; the CPU's vector instruction set; inductor's, Dynamo's and the
symbolic shapes' configuration; and adamkit's own compile options. Guards on the inputs (their
number, dtypes, ranks, devices, size relations) are stored with the trace and checked on the
first call of each call object; global guards (the functions and values bound in the chunk
body's globals, the thread count) are dropped by torch's capture, which is why the bindings
are in the key.

Only CPU configurations are stored (the key names the CPU's vector instructions, not a GPU's
architecture).

Nothing here may change results: a stored trace that is missing, unreadable, from another
version or whose guards fail is ignored and the configuration is traced as before (and stored
again). Files are written whole under a temporary name and renamed, so a reader sees a complete
file or none. They are unpickled, as inductor's own cache entries are (and load code as its
compiled kernels do): whoever can write the cache directory can run code in the processes that
use it, with or without this module. ``ADAMKIT_STORED_TRACES=0`` turns storing off; so does
inductor's ``force_disable_caches``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import tempfile
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("adamkit")

FORMAT = 1  # of the stored files; part of the key


class UnstorableError(Exception):
    """A configuration binds something whose behaviour its description cannot pin down."""


def enabled() -> bool:
    """Whether configurations are stored and loaded: this torch can capture ahead of time,
    caching is not disabled, and ``ADAMKIT_STORED_TRACES`` is not ``0``."""
    if os.environ.get("ADAMKIT_STORED_TRACES", "1") == "0":
        return False
    import torch._inductor.config as inductor_config

    if inductor_config.force_disable_caches:
        return False
    try:
        from torch._dynamo.aot_compile import AOTCompiledFunction  # noqa: F401
    except ImportError:  # pragma: no cover - torch before 2.10
        return False
    return True


def directory() -> Path:
    """Where traces are stored: ``adamkit/traces`` in inductor's cache directory (so
    ``TORCHINDUCTOR_CACHE_DIR`` moves or isolates both)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "adamkit" / "traces"


def describe(value: Any) -> str:
    """A text that determines ``value``'s part in a trace, the same in every process; raises
    :class:`UnstorableError` for what may behave differently under the same text."""
    return _text(value, _adamkit_leaf)


def _text(value: Any, leaf: Callable[[Any], str]) -> str:
    """``value``'s text with its containers' items in an order that is the same in every
    process (a set's or dict's own order changes with string hashing); ``leaf`` gives the
    text of anything else."""
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({', '.join(_text(v, leaf) for v in value)})"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({', '.join(sorted(_text(v, leaf) for v in value))})"
    if isinstance(value, Mapping):
        items = sorted(f"{_text(k, leaf)}: {_text(v, leaf)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return leaf(value)


def _adamkit_leaf(value: Any) -> str:
    """The text of a value that is not a container, for :func:`describe`: plain values,
    the CPU, and adamkit's own classes, functions and objects."""
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype)):
        return repr(value)
    if isinstance(value, torch.device):
        if value.type != "cpu":  # the key names the CPU's instructions, not a GPU's
            raise UnstorableError(f"only CPU graphs are stored, not {value.type!r} ones")
        return "device('cpu')"
    if isinstance(value, (type, types.FunctionType)):
        return _adamkit_name(value)
    if isinstance(value, staticmethod):
        return describe(value.__func__)
    if _adamkit_name(type(value), required=False) and hasattr(value, "__dict__"):
        return f"{_adamkit_name(type(value))}({describe(vars(value))})"
    raise UnstorableError(f"{type(value).__name__} is not adamkit's: {value!r}")


def _adamkit_name(obj: Any, required: bool = True) -> str:
    """``module.qualname`` of a class or function defined in adamkit (whose source is in the
    key) or a builtin one; raises :class:`UnstorableError` for others (or returns '')."""
    module = getattr(obj, "__module__", "") or ""
    qualname = getattr(obj, "__qualname__", "")
    if "<locals>" not in qualname and (
        module == "adamkit" or module.startswith("adamkit.") or module == "builtins"
    ):
        return f"{module}.{qualname}"
    if required:
        raise UnstorableError(f"{module}.{qualname} is not adamkit's")
    return ""


_SOURCE_DIGEST: list[str] = []


def source_digest() -> str:
    """The digest of every Python file of the adamkit package (names and text), once per
    process."""
    if not _SOURCE_DIGEST:
        root = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        _SOURCE_DIGEST.append(digest.hexdigest())
    return _SOURCE_DIGEST[0]


def _environment() -> str:
    """What the trace depends on outside the configuration: versions, the vector instruction
    set inductor generates code for, and the compilers' configurations."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config
    import torch.fx.experimental._config as fx_config
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    isa = pick_vec_isa()
    parts = [
        f"format {FORMAT}",
        torch.__version__,
        sys.version,
        source_digest(),
        f"{type(isa).__name__} {isa}",
    ]
    for config in (inductor_config, dynamo_config, fx_config):
        parts.append(_text(config.save_config_portable(), repr))
    return "\n".join(parts)


def trace_key(key: tuple, bindings: Mapping[str, Any], options: Mapping[str, Any]) -> str | None:
    """The name of a configuration's stored trace, or None if it cannot be stored (a binding
    that is not adamkit's, or storing is off)."""
    if not enabled():
        return None
    try:
        text = "\n".join(
            (
                _environment(),
                describe(key),
                describe(dict(bindings)),
                describe({k: _option_text(v) for k, v in options.items()}),
            )
        )
    except UnstorableError as err:
        logger.debug("adamkit: configuration not stored (%s)", err)
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _option_text(value: Any) -> Any:
    """An inductor option as text: custom passes by their ``uuid`` (what inductor keys on)."""
    uuid = getattr(value, "uuid", None)
    return repr(uuid()) if callable(uuid) else value


class StoredTrace:
    """A configuration's graph as torch's capture gave it (traced here, or loaded): the
    compiled graph, the code that feeds it the chunk body's arguments, and its guards."""

    def __init__(self, function: Any) -> None:
        self.function = function  # torch._dynamo.aot_compile.AOTCompiledFunction

    @property
    def unguarded(self) -> Callable[..., Any]:
        """The chunk body as compiled, without the guards' check."""
        return self.function.fn

    def admits(self, *args: Any) -> bool:
        """Whether the stored guards pass on these arguments of the chunk body."""
        return bool(self.function.guard_check(*args))


def load(name: str, f_globals: dict[str, Any], options: Mapping[str, Any]) -> StoredTrace | None:
    """The trace stored under ``name``, or None if there is none or it cannot be used. Its
    kernels are loaded (or compiled, from the stored code) under ``options``, adamkit's
    inductor options, with adamkit's code generation: the compiler flags are not stored."""
    from torch._dynamo.aot_compile import AOTCompiledFunction

    from adamkit.core.codegen import adjusted_codegen

    path = directory() / f"{name}.trace"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        logger.debug("adamkit: stored trace %s unreadable (%s)", path, err)
        return None
    try:
        entry = pickle.loads(data)
        if not (isinstance(entry, dict) and entry.get("format") == FORMAT):
            raise ValueError("not a stored trace of this format")
        with adjusted_codegen(), torch._inductor.config.patch(dict(options)):
            function = AOTCompiledFunction.deserialize(entry["function"], f_globals=f_globals)
        return StoredTrace(function)
    except Exception as err:  # any unusable file: trace again, as without one
        logger.debug("adamkit: stored trace %s not used (%s)", path, err)
        return None


def save(name: str, trace: StoredTrace) -> None:
    """Store ``trace`` under ``name`` (whole, or not at all); failures are only logged."""
    try:
        function = type(trace.function).serialize(trace.function).serialized_data
        data = pickle.dumps({"format": FORMAT, "function": function})
        folder = directory()
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, folder / f"{name}.trace")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except Exception as err:  # a full disk or a read-only cache costs the next process a trace
        logger.debug("adamkit: trace %s not stored (%s)", name, err)
