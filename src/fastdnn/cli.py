"""The ``fastdnn`` command line: ``fastdnn train ...`` (and ``python -m fastdnn``).

Subcommands live in ``COMMANDS``; each is a pair of functions, one that adds its
options to an argparse sub-parser and one that runs it and returns an exit code.
A new subcommand is one more entry there, without touching ``main``.
"""

import argparse
import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np

import fastdnn as fd

from . import datasets

PROG = "fastdnn"

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
LOSSES = ("cross_entropy", "mse", "binary_cross_entropy")
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")

# Per-dataset defaults, so that `fastdnn train` alone is a good demo. Measured on
# 8 seeds (each its own split and init), one thread:
# - digits: SGD momentum 0.9, lr 0.1, batch 32, 30 epochs: held-out accuracy
#   0.975-0.989 (mean 0.981), 0.1 s of training. Adam 2e-3 dipped to 0.969.
# - parity: memorised (evaluated on all 256 inputs); Adam 3e-3 reaches 100% in
#   30 epochs on 5/5 seeds, so 100 leaves margin.
# - zigzag: depth-3 tent map. With relu 1 seed in 8 stalled at R2 0.47 (dead
#   units); leaky_relu (still piecewise linear) gave R2 >= 0.996 on all 8.
# - file (--data): plain Adam 1e-3, not tuned to any data.
PRESETS = {
    "digits": dict(hidden=[128, 128], activation="relu", epochs=30, batch_size=32,
                   optimizer="momentum", lr=0.1),
    "parity": dict(hidden=[128, 128], activation="relu", epochs=100, batch_size=32,
                   optimizer="adam", lr=3e-3),
    "zigzag": dict(hidden=[32, 32, 32], activation="leaky_relu", epochs=300, batch_size=32,
                   optimizer="adam", lr=3e-3),
    "file": dict(hidden=[128, 128], activation="relu", epochs=30, batch_size=32,
                 optimizer="adam", lr=1e-3),
}


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class Command(NamedTuple):
    """A subcommand: ``configure(parser)`` adds options, ``run(args)`` returns an exit code."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of printing usage and exiting.

    argparse's own error path prints the whole usage block; the CLI promises
    a single ``fastdnn: error: ...`` line, so ``main`` formats it.
    """

    def error(self, message):
        raise UsageError(message)


# --- argument types -------------------------------------------------------------


def parse_hidden(text):
    """Parse ``"128,128"`` into ``[128, 128]``; ``""`` means no hidden layer."""
    text = text.strip()
    if not text:
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths like 128,128, got {text!r}"
        ) from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return sizes


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


# --- train ---------------------------------------------------------------------


def configure_train(parser):
    """Add the options of ``fastdnn train`` to ``parser``."""
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset",
        choices=("digits", "parity", "zigzag"),
        help="built-in data set (default digits): 8x8 digits from scikit-learn, "
        "8-bit parity (evaluated on all 256 inputs), or the depth-3 zig-zag regression",
    )
    source.add_argument(
        "--data", metavar="FILE", help="your own data: a .csv with a header row, or an "
        ".npz with arrays X and y",
    )
    data.add_argument(
        "--target", metavar="COLUMN", help="label column of a .csv (required), "
        "or the target array of an .npz (default y)",
    )
    data.add_argument(
        "--test-size", type=_fraction, default=0.2, metavar="FRAC",
        help="held-out fraction for evaluation (default 0.2; parity uses all data)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--hidden", type=parse_hidden, metavar="N,N,...",
        help="hidden layer widths (default 128,128; 32,32,32 for zigzag)",
    )
    model.add_argument(
        "--activation", metavar="NAME[,NAME...]",
        help="hidden activation, or one per hidden layer (default relu; leaky_relu "
        "for zigzag)",
    )
    model.add_argument(
        "--loss", choices=LOSSES, help="loss; default cross_entropy for integer "
        "labels, mse otherwise",
    )
    model.add_argument("--dtype", choices=("float32", "float64"), default="float32")

    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=_positive(int), help="default depends on the data set")
    fit.add_argument("--batch-size", type=_positive(int), help="default 32")
    fit.add_argument("--optimizer", choices=OPTIMIZERS, help="momentum is SGD with momentum "
                     "0.9 (default for digits; adam otherwise)")
    fit.add_argument("--lr", type=_positive(float), help="learning rate (default depends on "
                     "the data set)")
    fit.add_argument("--seed", type=int, default=0, help="seed for the split and the "
                     "initial weights (default 0)")
    fit.add_argument("--threads", type=_positive(int), help="Numba threads (default all)")

    out = parser.add_argument_group("output")
    out.add_argument("--out", default="fastdnn-model.npz", metavar="FILE",
                     help="where to save the trained model (default ./fastdnn-model.npz)")
    out.add_argument("--no-save", action="store_true", help="do not save the model")
    out.add_argument("--quiet", "-q", action="store_true",
                     help="no per-epoch progress, only the results")


def load_data(args, dtype):
    """Return ``(name, X, y)`` for the data source chosen in ``args``."""
    if args.data is not None:
        if args.target is None and args.data.lower().endswith(".csv"):
            raise UsageError("--data FILE.csv needs --target COLUMN naming the label column")
        X, y = datasets.load_csv_or_npz(args.data, target=args.target, dtype=dtype)
        return os.path.basename(args.data), X, y
    if args.target is not None:
        raise UsageError("--target only applies together with --data FILE")
    name = args.dataset or "digits"
    if name == "digits":
        X, y = datasets.load_digits(dtype=dtype)
    elif name == "parity":
        # +-1 inputs: zero-mean features, which train in a fraction of the epochs.
        X, y = datasets.make_parity(8, signed=True, dtype=dtype)
    else:
        X, y = datasets.make_zigzag(1024, depth=3, dtype=dtype)
    return name, X, y


def choose_loss(args, y):
    """The loss from ``--loss``, else cross_entropy for integer labels, else mse."""
    if args.loss is not None:
        return args.loss
    return "cross_entropy" if y.dtype.kind in "iu" else "mse"


def encode_labels(y, loss, dtype):
    """Check and shape targets for ``loss``; return ``(y, n_outputs, note)``.

    cross_entropy needs labels 0..k-1; other integer labels (say 1..5 or -1/+1)
    are mapped onto 0..k-1 in sorted order, and ``note`` says so.
    """
    note = None
    if loss == "cross_entropy":
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError("cross_entropy needs integer class labels in a 1-D target")
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"classification needs at least 2 classes, found {len(classes)}")
        if not np.array_equal(classes, np.arange(len(classes))):
            note = f"labels {classes.tolist()} mapped to 0..{len(classes) - 1}"
            y = codes.astype(np.int64)
        return y, len(classes), note
    y = np.ascontiguousarray(y, dtype=dtype)
    if loss == "binary_cross_entropy" and (y.min() < 0 or y.max() > 1):
        raise ValueError("binary_cross_entropy needs targets in [0, 1]")
    return y, (1 if y.ndim == 1 else y.shape[1]), note


def make_optimizer(name, lr):
    """Build the optimizer object for ``--optimizer name --lr lr``."""
    if name == "sgd":
        return fd.SGD(lr=lr)
    if name == "momentum":
        return fd.SGD(lr=lr, momentum=0.9)
    if name == "adam":
        return fd.Adam(lr=lr)
    return fd.AdamW(lr=lr)


def run_train(args):
    """Train, evaluate and save a net as asked by ``args``; return the exit code."""
    start = time.perf_counter()
    if not args.no_save:
        # Fail before training, not after it.
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise UsageError(f"--out {args.out}: folder {folder} does not exist")
    dtype = np.dtype(args.dtype)
    name, X, y = load_data(args, dtype)
    preset = PRESETS[args.dataset or ("file" if args.data else "digits")]
    hidden = preset["hidden"] if args.hidden is None else args.hidden
    epochs = args.epochs or preset["epochs"]
    batch_size = args.batch_size or preset["batch_size"]
    optimizer_name = args.optimizer or preset["optimizer"]
    lr = args.lr or preset["lr"]
    activation = args.activation or preset["activation"]
    if "," in activation:
        activation = activation.split(",")

    loss = choose_loss(args, y)
    y, n_outputs, note = encode_labels(y, loss, dtype)
    if args.dataset == "parity":
        # A parity net memorises its 256 inputs; there is nothing to hold out.
        X_train, X_test, y_train, y_test = X, X, y, y
        held_out = "all data"
    else:
        X_train, X_test, y_train, y_test = datasets.train_test_split(
            X, y, test_size=args.test_size, seed=args.seed
        )
        held_out = "held-out"

    net = fd.MLP(
        [X.shape[1], *hidden, n_outputs],
        activation=activation,
        loss=loss,
        dtype=args.dtype,
        seed=args.seed,
        n_threads=args.threads,
    )
    say = (lambda *a: None) if args.quiet else print
    say(f"data: {name}, {len(X)} samples x {X.shape[1]} features, "
        f"train {len(X_train)}, test {len(X_test)} ({held_out})")
    if note:
        say(f"note: {note}")
    say(f"model: {net!r}")
    say(f"training: {optimizer_name} lr={lr:g}, {epochs} epochs, batch size {batch_size}")

    hist = net.fit(
        X_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=make_optimizer(optimizer_name, lr),
        validation_data=(X_test, y_test),
        verbose=not args.quiet,
    )

    score = net.score(X_test, y_test)
    metric = "accuracy" if loss in CLASSIFICATION_LOSSES else "R2"
    print(f"{held_out} {metric}: {score:.4f} ({len(X_test)} samples)")
    print(throughput_line(hist.seconds, len(X_train)))
    saved = None if args.no_save else save_model(net, args.out)
    print(f"wall time: {time.perf_counter() - start:.2f} s (including data loading and JIT compile)")
    if saved:
        print(f"model saved to {saved}")
    return 0


def save_model(net, path):
    """Save ``net`` to ``path`` and return the absolute path of the file written."""
    net.save(path)
    # np.savez appends ".npz" to names without it; report the file that exists.
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    return os.path.abspath(path)


def throughput_line(seconds, n_train):
    """Describe training speed from the per-epoch times in ``History.seconds``.

    The first epoch includes Numba's JIT compile or cache load (about 1 s for
    digits on first use, versus ~10 ms for a later epoch), so it is left out of
    the rate when there are others.
    """
    seconds = list(seconds)
    steady = seconds[1:] if len(seconds) > 1 else seconds
    total = sum(steady)
    rate = n_train * len(steady) / total if total > 0 else float("inf")
    which = f"epochs 2-{len(seconds)}" if len(seconds) > 1 else "1 epoch, includes JIT compile"
    return (f"throughput: {rate:,.0f} samples/s ({which}); "
            f"training time {sum(seconds):.2f} s for {len(seconds)} "
            f"epoch{'s' if len(seconds) != 1 else ''}")


# --- experiment ----------------------------------------------------------------


def configure_experiment(parser):
    """Add the options of ``fastdnn experiment`` to ``parser``."""
    from .experiments import EXPERIMENTS

    parser.add_argument("name", choices=sorted(EXPERIMENTS),
                        help="zigzag: pieces against depth; parity: deep vs shallow; "
                        "regions: regions crossed by a line against units")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default 3)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw the table (needs matplotlib: pip install 'fastdnn[plots]')")


def run_experiment(args):
    """Run one depth experiment, print its table (and plot it); return the exit code."""
    from .experiments import EXPERIMENTS, plot

    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1; got {args.seeds}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install 'fastdnn[plots]'") from None
    start = time.perf_counter()
    table = EXPERIMENTS[args.name](seeds=args.seeds)
    print(table)
    if args.plot:
        plot(table, args.plot)
        print(f"figure: {args.plot}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


# --- main ----------------------------------------------------------------------

COMMANDS = {
    "train": Command("train and evaluate a net, then save it", configure_train, run_train),
    "experiment": Command("run one of the lecture's depth experiments and print its table",
                          configure_experiment, run_experiment),
}


def build_parser():
    """Return the top-level parser with one sub-parser per entry of ``COMMANDS``."""
    parser = _Parser(prog=PROG, description="Train feed-forward neural nets with Numba kernels.")
    parser.add_argument("--version", action="version", version=f"{PROG} {fd.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.configure(sub.add_parser(name, help=command.help, description=command.help))
    return parser


# Errors that mean bad input or a failed run rather than a bug in fastdnn: these
# become one line on stderr; anything else keeps its traceback for the bug report.
# TrainingDivergedError is a FloatingPointError, DeviceError a RuntimeError.
RUN_ERRORS = (ValueError, TypeError, OSError, ImportError, MemoryError,
              fd.TrainingDivergedError, fd.DeviceError)


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = f"out of memory ({text}); try smaller --hidden layers or --batch-size"
    if isinstance(exc, fd.TrainingDivergedError):
        text += "; try a smaller --lr"
    return text


class _PipeGuard:
    """stdout that outlives its reader: when the pipe closes (``fastdnn train | head -1``)
    the rest of the output goes to /dev/null and the run goes on, so the model is still
    trained and saved (it died of BrokenPipeError before)."""

    def __init__(self, stream):
        self.stream = stream

    def _guard(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
            return call(*args)

    def write(self, text):
        return self._guard(self.stream.write, text)

    def flush(self):
        return self._guard(self.stream.flush)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def main(argv=None):
    """Run the ``fastdnn`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit code: 0 on success, 2 for bad arguments, 1 when the run fails
        (unreadable data, diverged training, ...). Errors are reported as one
        ``fastdnn: error: ...`` line on stderr, without a traceback.
    """
    parser = build_parser()
    stdout = sys.stdout
    if hasattr(stdout, "fileno"):
        try:
            stdout.fileno()
            sys.stdout = _PipeGuard(stdout)
        except (OSError, ValueError):  # no real file behind it (captured, redirected in-process)
            pass
    try:
        args = parser.parse_args(argv)
        return COMMANDS[args.command].run(args)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)} (see {PROG} --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RUN_ERRORS as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout
