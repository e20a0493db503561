"""bench.json, bench.md and the chart bench.png (matplotlib, when installed)."""

from __future__ import annotations

import json

from .report import PEERS, format_markdown

CHART_PANEL = 40


def write_results(report: dict, folder: str) -> list[str]:
    """Writes bench.json, bench.md and, when matplotlib is installed, bench.png (each workload's GB/s
    for rsnorm and its peers on a log scale, its roofline as a tick) into `folder`. Returns
    the paths written."""
    import os

    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "bench.json"), os.path.join(folder, "bench.md")]
    with open(paths[0], "w") as f:
        json.dump(report, f, indent=2)
    with open(paths[1], "w") as f:
        f.write(format_markdown(report))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    results = report["results"]
    names = ["rsnorm", *(p for p in PEERS if any(p in r["median_s"] for r in results))]
    # Panels of at most CHART_PANEL workloads, stacked, so a full run stays readable.
    panels = [results[i : i + CHART_PANEL] for i in range(0, len(results), CHART_PANEL)]
    width_in = max(8.0, 0.55 * max(len(p) for p in panels))
    fig, axes = plt.subplots(len(panels), 1, figsize=(width_in, 6.0 * len(panels)), squeeze=False)
    width = 0.8 / len(names)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for k, name in enumerate(names):
            xs = [
                i + (k - (len(names) - 1) / 2) * width for i, r in enumerate(panel) if name in r["median_s"]
            ]
            gbps = [r["bytes_moved"] / r["median_s"][name] / 1e9 for r in panel if name in r["median_s"]]
            ax.bar(xs, gbps, width, label=name, color=f"C{k}")
        bounds = [
            (i, r["bytes_moved"] / r["median_s"][kind] / 1e9)
            for i, r in enumerate(panel)
            if (kind := r.get("roofline", "copy")) in r["median_s"]
        ]
        if bounds:
            ticks, bound_gbps = zip(*bounds, strict=True)
            ax.scatter(ticks, bound_gbps, marker="_", s=300, color="black", zorder=3, label="roofline")
        ax.set_yscale("log")
        ax.set_xticks(range(len(panel)))
        ax.set_xticklabels(
            [f"{r['op']}\n{tuple(r['shape'])}" for r in panel], rotation=70, ha="right", fontsize=6
        )
        ax.set_ylabel("GB/s (bytes read + written), log scale")
    cfg = report["config"]
    axes[0, 0].set_title(
        f"rsnorm {cfg['rsnorm']} · {cfg['simd']} · {cfg['threads']} threads (higher is better)"
    )
    # Handles of every series (a panel may lack some, whose empty bars carry no colour).
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Patch | Line2D] = [Patch(color=f"C{k}", label=name) for k, name in enumerate(names)]
    handles.append(Line2D([], [], color="black", marker="_", linestyle="", label="roofline"))
    axes[0, 0].legend(handles=handles, fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(folder, "bench.png"))
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths
