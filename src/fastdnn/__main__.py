"""``python -m fastdnn``: the same command line as the ``fastdnn`` console script."""

from .cli import run

if __name__ == "__main__":
    run()
