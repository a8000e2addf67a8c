"""python-dotenv's parser module, loaded on its own.

`import dotenv.parser` runs `dotenv/__init__`, which imports `dotenv.main` and with it `logging` and more
(~16 ms): a third of `./stackshift env-sync`'s budget. The parser module imports only `re` and `codecs`, so it is
loaded here from the installed package's own file, unchanged. If it is already imported, that copy is used.
"""
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same module, as the type checker sees it
    from dotenv import parser
elif "dotenv.parser" in sys.modules:
    parser = sys.modules["dotenv.parser"]
else:
    _spec = importlib.util.find_spec("dotenv")
    if _spec is None or _spec.origin is None:
        raise ImportError("python-dotenv is not installed")
    _file = Path(_spec.origin).parent / "parser.py"
    _parser_spec = importlib.util.spec_from_file_location("stackshift._dotenv_parser_module", _file)
    if _parser_spec is None or _parser_spec.loader is None:
        raise ImportError(f"cannot load python-dotenv's parser from {_file}")
    parser = importlib.util.module_from_spec(_parser_spec)
    _parser_spec.loader.exec_module(parser)
