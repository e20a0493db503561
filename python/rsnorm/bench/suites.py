"""The suites a run can cover: per op family, small shapes (per-call latency) and large ones
(bandwidth), and how long to time them."""

from __future__ import annotations

from dataclasses import dataclass

# Each op family's module registers its workloads on import.
from . import channels, divergence, optimizers, rows, statistics  # noqa: F401
from .workload import FAMILIES, Workload


@dataclass(frozen=True)
class Suite:
    """The shapes of each op family's workloads."""

    row_shapes: tuple[tuple[int, ...], ...]  # LayerNorm and RMSNorm
    row_op_shapes: tuple[tuple[int, ...], ...]  # the other row ops, log-softmax and moments
    row_backward_shapes: tuple[tuple[int, ...], ...]
    channel_shapes: tuple[tuple[int, ...], ...]  # NCHW
    channel_backward_shapes: tuple[tuple[int, ...], ...]
    optim_sizes: dict[str, tuple[int, ...]]  # label -> the sizes of a parameter group's tensors
    divergence_shapes: tuple[tuple[int, ...], ...]
    short_probability_shapes: tuple[tuple[int, ...], ...]  # the information measures' short rows
    segmentation_shape: tuple[int, ...]  # softmax over the classes of (N, classes, H, W)
    w1_samples: int  # the samples of Wasserstein-1, and the models AIC / BIC compare
    rounds: int
    target_s: float
    settle_s: float

    def workloads(self, threads: int) -> list[Workload]:
        names = sorted(FAMILIES, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
        return [load for name in names for load in FAMILIES[name](self, threads)]


# The order of a run's (and the README table's) families; a family not named here comes last.
ORDER = ("rows", "channels", "optimizers", "divergence", "statistics")


SUITES = {
    "full": Suite(
        row_shapes=((1, 64), (64, 768), (4096, 1024), (8192, 4096)),
        row_op_shapes=((64, 768), (4096, 1024)),
        row_backward_shapes=((64, 768), (4096, 1024)),
        channel_shapes=((4, 32, 16, 16), (32, 512, 7, 7), (32, 64, 56, 56)),
        channel_backward_shapes=((4, 32, 16, 16), (16, 64, 56, 56)),
        optim_sizes={"100k": (100_000,), "10M": (10_000_000,), "200x50k": (50_000,) * 200},
        divergence_shapes=((64, 1000), (4096, 1000)),
        short_probability_shapes=((100_000, 10),),
        segmentation_shape=(8, 21, 128, 128),
        w1_samples=1_000_000,
        rounds=11,
        target_s=0.02,
        settle_s=0.005,
    ),
    "quick": Suite(
        row_shapes=((1, 64), (64, 768), (512, 1024)),
        row_op_shapes=((64, 256),),
        row_backward_shapes=((256, 256),),
        channel_shapes=((4, 16, 28, 28),),
        channel_backward_shapes=((4, 16, 14, 14),),
        optim_sizes={"1M": (1_000_000,), "20x50k": (50_000,) * 20},
        divergence_shapes=((256, 100),),
        short_probability_shapes=((1000, 10),),
        segmentation_shape=(2, 21, 32, 32),
        w1_samples=10_000,
        rounds=3,
        target_s=0.002,
        settle_s=0.0,
    ),
}
