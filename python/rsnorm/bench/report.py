"""The report as a table: per workload rsnorm's time, GB/s, share of a same-bytes copy and each
peer's speed-up, as text or Markdown."""

from __future__ import annotations

PEERS = ("numpy", "scipy", "torch", "torch fused", "onnxruntime")


def summarize(report: dict) -> list[dict]:
    """Per workload: rsnorm's median, GB/s, share of the same-bytes copy, each peer's speed-up and
    the speed-up over the fastest peer (None where no peer ran)."""
    rows = []
    for r in report["results"]:
        t = r["median_s"]
        ours = t["rsnorm"]
        peers = {p: t[p] / ours for p in PEERS if p in t}
        rows.append(
            {
                "op": r["op"],
                "shape": tuple(r["shape"]),
                "dtype": r["dtype"],
                "ms": ours * 1e3,
                "alloc_ms": t["rsnorm alloc"] * 1e3 if "rsnorm alloc" in t else None,
                "gbps": r["bytes_moved"] / ours / 1e9,
                "copy_share": t["copy"] / ours
                if "copy" in t
                else r["bytes_moved"] / ours / 1e9 / report["copy_gbps"],
                "peer_ms": {p: t[p] * 1e3 for p in PEERS if p in t},
                "speedup": peers,
                "vs_fastest": min(peers.values()) if peers else None,
            }
        )
    return rows


def _header(report: dict) -> list[str]:
    cfg = report["config"]
    if "device" in cfg:
        return [
            f"rsnorm {cfg['rsnorm']} on the GPU: {cfg['device']}",
            f"device copy ceiling (512 MB, read + write): {report['copy_gbps']:.1f} GB/s",
            "times are medians in ms per call over samples of k calls: device time where the adapter has",
            "timestamps (PyTorch: CUDA events), else wall time including recording and submitting;",
            "% copy = a same-bytes device copy's time / rsnorm's time;",
            "speed-up = peer time / rsnorm time ('torch' is PyTorch CUDA)",
        ]
    return [
        f"rsnorm {cfg['rsnorm']} · simd {cfg['simd']} · {cfg['threads']} threads · numpy {cfg['numpy']}",
        f"copy ceiling ({cfg['threads']} threads, 256 MB, read + write): {report['copy_gbps']:.1f} GB/s",
        "times are medians in ms; 'rsnorm' writes into a preallocated out=, 'alloc' returns a new array;",
        "% copy = time of a same-bytes copy (interleaved with the workload) / rsnorm's time;",
        "speed-up = peer time / rsnorm time; 'fastest' is against the fastest peer",
    ]


def format_table(report: dict) -> str:
    lines = [*_header(report), ""]
    rows = summarize(report)
    # The peers that ran somewhere (all of them on a CPU run, so its columns stay put).
    peers = [p for p in PEERS if "device" not in report["config"] or any(p in r["peer_ms"] for r in rows)]
    header = (
        f"{'op':<24}{'shape':<20}{'dtype':<8}{'rsnorm':>9}{'GB/s':>7}{'%copy':>7}{'alloc':>9}"
        + "".join(f"{p:>12}" for p in peers)
        + "".join(f"{'×' + p:>13}" for p in peers)
        + f"{'×fastest':>10}"
    )
    lines += [header, "-" * len(header)]
    for row in rows:
        alloc = f"{row['alloc_ms']:>9.3f}" if row["alloc_ms"] is not None else f"{'—':>9}"
        line = (
            f"{row['op']:<24}{row['shape']!s:<20}{row['dtype']:<8}{row['ms']:>9.3f}{row['gbps']:>7.1f}"
            f"{100 * row['copy_share']:>6.0f}%{alloc}"
        )
        line += "".join(f"{row['peer_ms'][p]:>12.3f}" if p in row["peer_ms"] else f"{'—':>12}" for p in peers)
        line += "".join(
            f"{row['speedup'][p]:>12.1f}×" if p in row["speedup"] else f"{'—':>13}" for p in peers
        )
        line += f"{row['vs_fastest']:>9.1f}×" if row["vs_fastest"] is not None else f"{'—':>10}"
        lines.append(line)
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The table as Markdown (for README.md): only the peer columns that have a value somewhere."""
    rows = summarize(report)
    peers = [p for p in PEERS if any(p in row["peer_ms"] for row in rows)]
    head = ["op", "shape", "rsnorm ms", "GB/s", "% copy", *(f"{p} ms" for p in peers), "× fastest peer"]
    lines = ["\n".join(f"> {line}" for line in _header(report)), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in rows:
        cells = [row["op"], str(row["shape"]), f"{row['ms']:.3f}", f"{row['gbps']:.1f}"]
        cells.append(f"{100 * row['copy_share']:.0f}%")
        cells += [f"{row['peer_ms'][p]:.3f}" if p in row["peer_ms"] else "—" for p in peers]
        cells.append(f"{row['vs_fastest']:.1f}×" if row["vs_fastest"] is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
