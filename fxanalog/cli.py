"""The ``fxanalog`` command line: ``demo``, ``summary`` and ``dump``.

``python -m fxanalog ...`` is the same program. Every failure (a bad
option, a MODEL that does not import, whose factory or forward raises, an
input shape too large to allocate, a config file that is not a config, an
output that cannot be written, anything unexpected) ends with one line on
stderr and exit code 2, never a traceback; ``main`` returns the exit code
instead of raising.

MODEL's module is looked up in the current directory too, searched after
the standard library and the installed packages and only while that module
is imported (``_import_from_cwd``): a file in the directory never shadows a
module torch or fxanalog imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

__all__ = ["main", "CLIError", "load_model", "parse_shape"]

_PROG = "fxanalog"


class CLIError(Exception):
    """A user error: printed as one line (``PROG: error: MESSAGE``), exit code 2."""

    def __init__(self, message: str, prog: str = _PROG):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help)."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise CLIError(f"{message} (see '{self.prog} --help')", prog=self.prog)


# --------------------------------------------------------------------------
# Arguments


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,32,32"`` (or ``"1x3x32x32"``) -> ``(1, 3, 32, 32)``."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise CLIError(f"--input-shape {text!r}: expected positive whole numbers separated by commas, e.g. 1,3,32,32")
    return shape


def load_model(spec: str):
    """``package.module:factory`` -> the ``nn.Module`` the factory returns.

    The current directory is importable, so ``examples.models:mlp`` works from
    the repository root.
    """
    from torch import nn

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"MODEL {spec!r}: expected package.module:factory, e.g. fxanalog.presets:small_cnn")
    try:
        module = _import_from_cwd(module_name)
    except ImportError as e:
        raise CLIError(f"MODEL {spec!r}: cannot import {module_name!r}: {e}") from None
    except Exception as e:  # the module itself fails while importing
        raise CLIError(f"MODEL {spec!r}: importing {module_name!r} raised {type(e).__name__}: {e}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"MODEL {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CLIError(f"MODEL {spec!r}: {attr!r} is a {type(obj).__name__}, expected a callable returning an nn.Module")
    try:
        model = obj()
    except Exception as e:
        raise CLIError(f"MODEL {spec!r}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise CLIError(f"MODEL {spec!r}: the factory returned a {type(model).__name__}, expected an nn.Module")
    return model


def _import_from_cwd(module_name: str):
    """Import MODEL's module, finding it in the current directory too, without
    letting the directory shadow anything else: the directory is searched
    last (after the standard library and the installed packages) and only
    while the module itself is imported, then taken off ``sys.path`` again,
    so that a ``colorsys.py`` lying there is never what torch imports later."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _load_config(spec: Optional[str]):
    from fxanalog.presets import load_config

    if spec is None:
        return None
    try:
        return load_config(spec)
    except ValueError as e:
        where = "" if spec in str(e) else f" {spec!r}"  # a decoding error does not name the file
        raise CLIError(f"--config{where}: {_one_line(e)}") from None
    except RecursionError:
        raise CLIError(f"--config {spec!r}: nested too deeply to be a config") from None
    except Exception as e:  # any other failure of a file's content: one line naming the file
        raise CLIError(f"--config {spec!r}: not a valid config: {type(e).__name__}: {_one_line(e)}") from None


def _example_inputs(shape):
    import torch

    if shape is None:
        return None
    torch.manual_seed(0)
    try:
        return (torch.randn(*shape),)
    except (RuntimeError, MemoryError) as e:
        raise CLIError(f"--input-shape {','.join(map(str, shape))}: cannot make an input of that shape: "
                       f"{type(e).__name__}: {_one_line(e)}") from None


def _compile(model, args):
    import fxanalog

    cfg = _load_config(args.config)
    example = _example_inputs(args.input_shape)
    try:
        return fxanalog.compile(model, cfg, example_inputs=example), example
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as e:
        raise CLIError(f"compiling MODEL {args.model!r} failed: {type(e).__name__}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------
# Subcommands


def _cmd_demo(args) -> int:
    from fxanalog.demo import DemoError, run_demo
    from fxanalog.train_demo import run_training_demo

    try:
        if args.train:
            run_training_demo(output=args.output, seed=args.seed, quick=args.quick, progress=not args.no_progress)
        else:
            run_demo(output=args.output, seed=args.seed, draws=args.draws, quick=args.quick,
                     progress=not args.no_progress)
    except DemoError as e:
        raise CLIError(str(e)) from None
    return 0


def _cmd_summary(args) -> int:
    import fxanalog

    model = load_model(args.model)
    compiled, example = _compile(model, args)
    try:
        summary = fxanalog.analog_summary(compiled, example_inputs=example)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CLIError(f"summary of MODEL {args.model!r} failed: {type(e).__name__}: {_one_line(e)}") from None
    print(summary)
    return 0


def _cmd_dump(args) -> int:
    import fxanalog

    model = load_model(args.model)
    compiled, example = _compile(model, args)
    try:
        text = fxanalog.dump(compiled, args.format, example_inputs=example)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CLIError(f"dump of MODEL {args.model!r} failed: {type(e).__name__}: {_one_line(e)}") from None
    if args.output == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise CLIError(f"-o {args.output!r}: cannot write it: {e.strerror or e}") from None
    print(f"wrote {args.format} dump of {args.model} to {args.output}")
    return 0


# --------------------------------------------------------------------------
# Parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number > 0")
    return value


def _shape(text: str) -> tuple[int, ...]:
    try:
        return parse_shape(text)
    except CLIError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--input-shape ")) from None


def build_parser() -> argparse.ArgumentParser:
    from fxanalog.presets import PRESETS

    width = max(len(name) for name in PRESETS)
    presets = "config presets (--config NAME):\n" + "\n".join(
        f"  {name:<{width}}  {desc}" for name, (desc, _) in PRESETS.items()
    )
    parser = _Parser(
        prog=_PROG,
        description="fxanalog: analog in-memory computing simulation for PyTorch, as a compiler.",
        epilog="Run 'fxanalog COMMAND --help' for the options of a command.",
    )
    from fxanalog import __version__

    parser.add_argument("--version", action="version", version=f"fxanalog {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.subcommands = sub.choices  # name -> parser, for errors in a subcommand's words

    demo = sub.add_parser(
        "demo",
        help="train a CNN on the 8x8 digits, run it on PCM tiles and report accuracy over time",
        description=(
            "Trains a small CNN digitally on scikit-learn's built-in 8x8 digits (no download), compiles it "
            "to analog tiles with a PCM inference config, programs the weights and reports the test accuracy "
            "from 1 second to 1 year after programming, with and without global drift compensation, before "
            "and after hardware-aware fine-tuning. Writes a plot, the graph dumps and the analog summary "
            "to the output folder."
        ),
    )
    demo.add_argument("--output", "-o", default="fxanalog-demo-output", metavar="DIR",
                      help="folder for the plot, dumps and summary (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data split, training and draws (default: 0)")
    demo.add_argument("--draws", type=_positive_int, default=None, metavar="N",
                      help="programming draws averaged per point (default: 10, or 2 with --quick)")
    demo.add_argument("--quick", action="store_true", help="fewer epochs, draws and test samples (seconds)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--train", action="store_true",
                      help="instead: train a 64-64-10 MLP on the digits ON pulsed devices (ConstantStep, SoftBounds, "
                           "an ideal device) with AnalogSGD, and plot the test accuracy per epoch")
    demo.set_defaults(func=_cmd_demo)

    model_help = "package.module:factory, a callable returning an nn.Module (e.g. fxanalog.presets:small_cnn)"
    config_help = "a preset name (below) or a JSON file of a config's to_dict() (default: InferenceRPUConfig())"

    summary = sub.add_parser(
        "summary",
        help="compile a model and print its analog layers and tiles",
        description="Compiles MODEL with --config and prints a table of its analog layers, tiles and\n"
                    "shapes (fxanalog.analog_summary).",
        epilog=presets,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    summary.add_argument("model", metavar="MODEL", help=model_help)
    summary.add_argument("--input-shape", type=_shape, required=True, metavar="SHAPE",
                         help="shape of one example input, e.g. 1,3,32,32")
    summary.add_argument("--config", metavar="NAME|FILE.json", help=config_help)
    summary.set_defaults(func=_cmd_summary)

    dump = sub.add_parser(
        "dump",
        help="compile a model and write its graph as text, JSON or Graphviz DOT",
        description="Compiles MODEL with --config and writes the rewritten graph (fxanalog.dump).",
        epilog=presets,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dump.add_argument("model", metavar="MODEL", help=model_help)
    dump.add_argument("--format", choices=("text", "json", "dot"), default="text",
                      help="text (readable), json (machine-readable) or dot (Graphviz); default: %(default)s")
    dump.add_argument("-o", "--output", default="-", metavar="FILE", help="output file ('-': stdout, the default)")
    dump.add_argument("--input-shape", type=_shape, default=None, metavar="SHAPE",
                      help="shape of one example input, to record tensor shapes (optional)")
    dump.add_argument("--config", metavar="NAME|FILE.json", help=config_help)
    dump.set_defaults(func=_cmd_dump)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error)."""
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            where = parser.subcommands.get(args.command, parser)
            where.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command is None:
            parser.print_help()
            return 2
        return args.func(args)
    except CLIError as e:
        print(f"{e.prog}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    except RecursionError:
        print(f"{_PROG}: error: recursion too deep (a deeply nested input or model)", file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback: what failed, in one line
        print(f"{_PROG}: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
