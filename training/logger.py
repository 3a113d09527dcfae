"""Optional live view of training curves (config `training.logger`): `none` (default) or `tensorboard`.

A TensorBoard logger writes event files under the run's folder (`<run>/tensorboard/`), locally, with
no network: `tensorboard --logdir results/runs` shows every run's eval and train loss and learning
rate while the study trains. It only mirrors what curve.csv records.
"""
from __future__ import annotations

from pathlib import Path

LOGGERS = ("none", "tensorboard")


class NullLogger:
    def log(self, step: int, values: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger(NullLogger):
    def __init__(self, log_dir):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, values: dict) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make_logger(kind: str, out_dir) -> NullLogger:
    if kind not in LOGGERS:
        from training.errors import InputError

        raise InputError(f"training.logger={kind!r} is not allowed; allowed: {', '.join(LOGGERS)}")
    return TensorBoardLogger(Path(out_dir) / "tensorboard") if kind == "tensorboard" else NullLogger()
