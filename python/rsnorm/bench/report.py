"""The report as a table: per workload rsnorm's time, GB/s, share of its roofline (a same-bytes copy,
in-place stream or read, or its matrix products) and each peer's speed-up, as text or Markdown."""

from __future__ import annotations

PEERS = ("numpy", "scipy", "torch", "torch fused", "onnxruntime")

# The speed targets (issue 25): a large memory-bound workload reaches this share of its roofline
# (timed in the same rounds; workload.ROOFLINES); a small one is this much faster than the fastest
# peer; any other is at least at parity with it, where within 5% is parity.
LARGE_BYTES, ROOFLINE_TARGET = 64 << 20, 0.90
SMALL_BYTES, SMALL_TARGET = 1 << 20, 1.3
PARITY = 0.95


_TARGETS = (
    f"missed = below target: ≥ {ROOFLINE_TARGET:.0%} roofline from {LARGE_BYTES >> 20} MB moved, "
    f"≥ {SMALL_TARGET}× fastest peer to {SMALL_BYTES >> 20} MB, else ≥ {PARITY}×"
)


def target_missed(row: dict, bytes_moved: int) -> str:
    """Which targets the row misses ("" when none), e.g. "<90% copy, <1.3× peer" (the roofline
    named)."""
    misses = []
    if bytes_moved >= LARGE_BYTES and row["roofline_share"] < ROOFLINE_TARGET:
        misses.append(f"<{ROOFLINE_TARGET:.0%} {row['roofline']}")
    if row["vs_fastest"] is not None:
        want = SMALL_TARGET if bytes_moved <= SMALL_BYTES else PARITY
        if row["vs_fastest"] < want:
            misses.append(f"<{want}× peer")
    return ", ".join(misses)


def summarize(report: dict) -> list[dict]:
    """Per workload: rsnorm's median, GB/s, its roofline and share of it, each peer's speed-up and
    the speed-up over the fastest peer (None where no peer ran). A report without the roofline's
    time (an older one) falls back to the copy ceiling."""
    rows = []
    for r in report["results"]:
        t = r["median_s"]
        ours = t["rsnorm"]
        roofline = r.get("roofline", "copy")
        peers = {p: t[p] / ours for p in PEERS if p in t}
        row = {
            "op": r["op"],
            "shape": tuple(r["shape"]),
            "dtype": r["dtype"],
            "ms": ours * 1e3,
            "alloc_ms": t["rsnorm alloc"] * 1e3 if "rsnorm alloc" in t else None,
            "gbps": r["bytes_moved"] / ours / 1e9,
            "roofline": roofline,
            "roofline_share": t[roofline] / ours
            if roofline in t
            else r["bytes_moved"] / ours / 1e9 / report["copy_gbps"],
            "peer_ms": {p: t[p] * 1e3 for p in PEERS if p in t},
            "speedup": peers,
            "vs_fastest": min(peers.values()) if peers else None,
        }
        row["missed"] = target_missed(row, r["bytes_moved"])
        rows.append(row)
    return rows


def _build_warning(cfg: dict) -> list[str]:
    """Lines saying the times are not the wheel's, where the extension is a local build of another
    profile than release (reports from before the "build" key are taken as release)."""
    build = cfg.get("build", "release")
    if build == "release":
        return []
    return [
        f"WARNING: this extension was built with the '{build}' profile, without the release profile's",
        "fat LTO: some kernels run up to 3x slower than in the wheel; build with --release to compare",
    ]


def _header(report: dict) -> list[str]:
    cfg = report["config"]
    return _build_warning(cfg) + _header_lines(report, cfg)


def _header_lines(report: dict, cfg: dict) -> list[str]:
    if "device" in cfg:
        return [
            f"rsnorm {cfg['rsnorm']} on the GPU: {cfg['device']}",
            f"device copy ceiling (512 MB, read + write): {report['copy_gbps']:.1f} GB/s",
            "times are medians in ms per call over samples of k calls: device time where the adapter has",
            "timestamps (PyTorch: CUDA events), else wall time including recording and submitting;",
            "roofline = a same-bytes device copy ('in-place' for optimizer steps where PyTorch runs an",
            "in-place stream) timed in the same rounds; % = its time / rsnorm's time;",
            "speed-up = peer time / rsnorm time ('torch' is PyTorch CUDA)",
            _TARGETS,
        ]
    return [
        f"rsnorm {cfg['rsnorm']} · simd {cfg['simd']} · {cfg['threads']} threads · numpy {cfg['numpy']}",
        f"copy ceiling ({cfg['threads']} threads, 256 MB, read + write): {report['copy_gbps']:.1f} GB/s",
        "times are rsnorm's medians in ms: 'ms' writes into a preallocated out=, 'alloc' returns new arrays;",
        "roofline = what bounds the row, timed interleaved with it on rsnorm's threads: 'copy' the same",
        "bytes half read, half written elsewhere; 'in-place' half read and written back; 'read' all read;",
        "'matmul' its matrix products alone (NumPy); % = the roofline's time / rsnorm's time;",
        "speed-up = peer time / rsnorm time; 'fastest' is against the fastest peer",
        _TARGETS,
    ]


# Short column labels for the text table, so it fits a terminal.
SHORT = {"numpy": "numpy", "scipy": "scipy", "torch": "torch", "torch fused": "torch-f", "onnxruntime": "ort"}


def format_table(report: dict) -> str:
    """The text table: rsnorm's time, GB/s, % roofline and each installed peer's speed-up (its time is
    in --json and --markdown). Only peers that ran somewhere get a column; op and shape columns are
    as wide as their longest entry."""
    rows = summarize(report)
    peers = [p for p in PEERS if any(p in r["peer_ms"] for r in rows)]
    op_w = max([len("op"), *(len(r["op"]) for r in rows)]) + 1
    shape_w = max([len("shape"), *(len(str(r["shape"])) for r in rows)]) + 1
    header = (
        f"{'op':<{op_w}}{'shape':<{shape_w}}{'dtype':<8}{'ms':>7}{'GB/s':>7} {'roofline':<13}{'alloc':>7}"
        + "".join(f"{'×' + SHORT[p]:>8}" for p in peers)
        + f"{'×fastest':>9} missed"
    )
    legend = [f"×{SHORT[p]} = {p}" for p in peers if SHORT[p] != p]
    lines = [*_header(report), *(["(" + ", ".join(legend) + ")"] if legend else []), ""]
    lines += [header, "-" * len(header)]
    for row in rows:
        alloc = f"{row['alloc_ms']:>7.3f}" if row["alloc_ms"] is not None else f"{'—':>7}"
        roofline = f"{100 * row['roofline_share']:.0f}% {row['roofline']}"
        line = (
            f"{row['op']:<{op_w}}{row['shape']!s:<{shape_w}}{row['dtype']:<8}{row['ms']:>7.3f}"
            f"{row['gbps']:>7.1f} {roofline:<13}{alloc}"
        )
        line += "".join(f"{row['speedup'][p]:>7.1f}×" if p in row["speedup"] else f"{'—':>8}" for p in peers)
        line += f"{row['vs_fastest']:>8.1f}×" if row["vs_fastest"] is not None else f"{'—':>9}"
        lines.append(f"{line} {row['missed']}".rstrip())
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The table as Markdown (for README.md): only the peer columns that have a value somewhere."""
    rows = summarize(report)
    peers = [p for p in PEERS if any(p in row["peer_ms"] for row in rows)]
    head = ["op", "shape", "rsnorm ms", "GB/s", "roofline %", *(f"{p} ms" for p in peers), "× fastest peer"]
    head.append("missed")
    lines = ["\n".join(f"> {line}" for line in _header(report)), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 3) + "---|"]
    for row in rows:
        cells = [row["op"], str(row["shape"]), f"{row['ms']:.3f}", f"{row['gbps']:.1f}"]
        cells.append(f"{100 * row['roofline_share']:.0f}% {row['roofline']}")
        cells += [f"{row['peer_ms'][p]:.3f}" if p in row["peer_ms"] else "—" for p in peers]
        cells.append(f"{row['vs_fastest']:.1f}×" if row["vs_fastest"] is not None else "—")
        cells.append(row["missed"] or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
