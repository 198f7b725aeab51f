"""Load the user code a setting names, and nothing else (verifiers; tools load the same way).

Two kinds of reference:
- an object, `path/to/file.py:name` or `package.module:name` (`load_object`);
- a plugin, `path/to/file.py` or `package.module`, imported for what it registers, e.g. `@verifier("name")`
  (`import_plugin`).
Only what is named is imported: other scripts in the same folder never run. A file or module that fails to
import is one UserError line naming it, the line, and the error, so the run stops before anything starts.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from rlpractice.errors import UserError


def import_plugin(ref: str, key: str) -> ModuleType:
    """Import the .py file or dotted module `ref`, once per process. `key` names the setting in errors."""
    path = Path(ref).expanduser()
    if path.is_dir():
        raise UserError(f"{key}: {path} is a folder; name the plugin files in it (e.g. {path / 'my_plugin.py'}): "
                        "only the files named are imported")
    if ref.endswith(".py"):
        return _import_file(path.resolve(), key)
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        if exc.name and (ref == exc.name or ref.startswith(exc.name + ".")):
            raise UserError(f"{key}: no module named {ref!r}; give a file path ending in .py, or a module "
                            "on the Python path") from None
        raise UserError(_failed(key, ref, exc)) from None
    except (Exception, SystemExit) as exc:
        raise UserError(_failed(key, ref, exc)) from None


def load_object(ref: str, key: str) -> object:
    """The object `ref` = 'path/to/file.py:name' or 'package.module:name' names."""
    where, sep, attr = ref.rpartition(":")
    if not (sep and where and attr):
        raise UserError(f"{key}={ref!r}: expected 'path/to/file.py:name' or 'package.module:name'")
    module = import_plugin(where, key)
    if not hasattr(module, attr):
        defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UserError(f"{key}={ref!r}: {where} has no {attr!r} (it defines: {', '.join(defined) or 'nothing'})")
    return getattr(module, attr)


def limit_worker(memory_limit_mb: int) -> None:
    """First thing in a worker process that runs user code (verifiers, environments): Ctrl-C is the parent's to
    handle (it stops the workers), and memory past `memory_limit_mb` (0: no limit) fails there, not in the parent."""
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_mb * 2**20,) * 2)


def _import_file(path: Path, key: str) -> ModuleType:
    if not path.is_file():
        raise UserError(f"{key}: no such file {path}")
    # One module per file, named after its path, so a file named in two settings is imported once.
    name = f"rlpractice_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # SystemExit: a script that parses its own command line
        del sys.modules[name]
        raise UserError(_failed(key, str(path), exc)) from None
    return module


def _failed(key: str, what: str, exc: BaseException) -> str:
    """'<key>: <file> failed to import (line N): <Error>: <message>', on one line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")
              and f.filename != __file__]
    where = f"{frames[0].filename} failed to import (line {frames[0].lineno})" if frames else f"{what} failed to import"
    message = " ".join(str(exc).split())[:300]
    return f"{key}: {where}: {type(exc).__name__}{': ' + message if message else ''}"
