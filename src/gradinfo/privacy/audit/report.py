"""What a person reads: ``report.html`` and its figures, and the command line's end-of-run line.

:func:`write_report` draws the report from the rows of ``results.jsonl`` and the cells' saved images;
:func:`summary` is what ``gradinfo audit`` prints when it returns. Figures are drawn with matplotlib's
object API (``Figure`` + Agg canvas: no pyplot state, no display) and saved as PNGs under ``figures/``,
linked from the HTML by relative paths, so the folder can be moved or zipped whole.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gradinfo import __version__
from gradinfo.core.job import JobResult
from gradinfo.privacy.audit.cell import CELLS, SMOOTH
from gradinfo.privacy.audit.config import ATTACKS, DEFENSES
from gradinfo.privacy.audit.setup import CLIP, DELTA, DP_TARGETS, LOCAL_BATCH, Setup

FIGURES = "figures"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; } .note { color: #555; font-size: 0.95em; }
"""


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    cls = [' class="l"' if i < left else "" for i in range(len(head))]
    out = ["<table><tr>" + "".join(f"<th{c}>{h}</th>" for c, h in zip(cls, head, strict=True)) + "</tr>"]
    out += ["<tr>" + "".join(f"<td{c}>{v}</td>" for c, v in zip(cls, r, strict=True)) + "</tr>" for r in rows]
    return "\n".join(out) + "</table>"


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _image(a: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> something ``imshow`` takes."""
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def _grid(defense: str, rows: list[dict[str, Any]], out: Path) -> str | None:
    """The reconstruction grid of one defense: originals, then one row per image attack; None if empty."""
    attacks: dict[str, list[tuple[int, Path]]] = {}
    for r in rows:
        path = out / CELLS / f"{r['cell']}.npz"
        if r["kind"] == "attack" and r["defense"] == defense and path.is_file():
            attacks.setdefault(r["attack"], []).append((r["batch_size"], path))
    if not attacks:
        return None
    batches = sorted({b for cells in attacks.values() for b, _ in cells})
    columns = sum(batches)
    fig = Figure(figsize=(1.1 * columns + 1.5, 1.2 * (len(attacks) + 1)))
    axes = fig.subplots(len(attacks) + 1, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (attack, found) in enumerate(sorted(attacks.items())):
        for b, path in found:
            arrays = np.load(path)
            first = sum(x for x in batches if x < b)
            for j in range(b):
                axes[0, first + j].imshow(_image(arrays["original"][j]), cmap="gray", vmin=0, vmax=1)
                axes[i + 1, first + j].imshow(_image(arrays["recovered"][j]), cmap="gray", vmin=0, vmax=1)
        axes[i + 1, 0].text(-0.1, 0.5, attack, transform=axes[i + 1, 0].transAxes, ha="right", va="center",
                            fontsize=7)  # fmt: skip
    axes[0, 0].text(
        -0.1, 0.5, "original", transform=axes[0, 0].transAxes, ha="right", va="center", fontsize=7
    )
    for b in batches:
        axes[0, sum(x for x in batches if x < b)].set_title(f"B={b}", fontsize=7, loc="left")
    fig.suptitle(f"{defense}: victims (top) and reconstructions", fontsize=9)
    name = f"{FIGURES}/recon-{defense}.png"
    _save(fig, out / name)
    return name


def _worst(rows: list[dict[str, Any]], defense: str, batch: int) -> float | None:
    scores = [r["psnr"] for r in rows if r["kind"] == "attack" and r["defense"] == defense
              and r["batch_size"] == batch and r["psnr"] is not None]  # fmt: skip
    return max(scores) if scores else None


def _scatter(setup: Setup, rows: list[dict[str, Any]], out: Path) -> str:
    utility = {r["defense"]: r["accuracy"] for r in rows if r["kind"] == "utility"}
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    markers = "osD^v<>p"
    for i, b in enumerate(setup.config.batch_sizes):
        points = [(utility[d], _worst(rows, d, b), d) for d in setup.config.defenses]
        points = [p for p in points if p[1] is not None]
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=markers[i % len(markers)],
                   label=f"B={b}")  # fmt: skip
        for acc, score, d in points:
            ax.annotate(d, (acc, score), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("test accuracy after federated training")
    ax.set_ylabel("PSNR of the strongest attack (dB)")
    ax.set_title("privacy-utility: lower and to the right is better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    name = f"{FIGURES}/privacy-utility.png"
    _save(fig, out / name)
    return name


def _engines(utility: dict[str, dict[str, Any]]) -> str:
    found = sorted({str(u.get("engine", "in-process")) for u in utility.values()})
    return ", ".join(found) or "none"


def write_report(
    setup: Setup, rows: list[dict[str, Any]], skipped: list[tuple[str, str, str]], out: Path
) -> Path:
    """Write ``report.html`` (and ``figures/*.png``) into ``out``; return its path.

    Args:
        setup: the prepared audit.
        rows: one row per cell, as in ``results.jsonl``.
        skipped: ``(attack, defense, reason)`` of the pairs that got no cell.
        out: the output folder.

    Returns:
        The path of ``report.html``.
    """
    config = setup.config
    (out / FIGURES).mkdir(exist_ok=True)
    utility = {r["defense"]: r for r in rows if r["kind"] == "utility"}
    attacks = [r for r in rows if r["kind"] == "attack"]
    steps = config.rounds * config.local_steps

    reference = utility["none"]["accuracy"] if "none" in utility else None
    summary = []
    for d in config.defenses:
        u = utility[d]
        cost = (
            "reference"
            if d == "none"
            else (f"{100 * (u['accuracy'] - reference):+.1f}" if reference is not None else "n/a")
        )
        worst = [_fmt(_worst(rows, d, b)) for b in config.batch_sizes]
        labels = [
            r["label_accuracy"] for r in attacks if r["defense"] == d and r["attack"] == "label_recovery"
        ]
        label = _fmt(float(np.mean(labels)), 2) if labels else "n/a"
        eps = _fmt(u["epsilon"], 2) if u["epsilon"] is not None else "&infin; (no DP)"
        summary.append(
            [html.escape(d), html.escape(DEFENSES[d]), _fmt(u["accuracy"], 3), cost, eps, *worst, label]
        )
    head = [
        "defense",
        "what the client shares",
        "test accuracy",
        "vs none (points)",
        "&epsilon; (&delta;=1e-5)",
    ]
    head += [f"max PSNR B={b} (dB)" for b in config.batch_sizes] + ["label accuracy"]

    detail = [
        [html.escape(r["defense"]), str(r["batch_size"]), html.escape(r["attack"]), _fmt(r["psnr"]),
         _fmt(r["ssim"], 3), _fmt(r["label_accuracy"], 2), "true labels given" if r["labels_given"] else "",
         _fmt(r["seconds"])]
        for r in attacks
    ]  # fmt: skip
    dp_rows = [
        [html.escape(d), _fmt(DP_TARGETS[d]), _fmt(utility[d]["noise_multiplier"], 3),
         _fmt(utility[d]["epsilon"], 3), f"{DELTA:g}", _fmt(CLIP),
         f"{setup.sample_rate:.3g} (Poisson, expected batch {LOCAL_BATCH})", str(steps)]
        for d in config.defenses if d in DP_TARGETS
    ]  # fmt: skip
    grids = [(d, _grid(d, rows, out)) for d in config.defenses]
    scatter = _scatter(setup, rows, out)
    curves = [[html.escape(d), " &rarr; ".join(f"{a:.2f}" for a in utility[d]["accuracy_curve"])]
              for d in config.defenses]  # fmt: skip

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>gradinfo audit</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Gradient leakage audit</h1>",
        f"<p class='note'>gradinfo {__version__}; model: {html.escape(setup.model_name)} "
        f"({setup.num_params:,} trainable parameters); data: {html.escape(config.data)} "
        f"(inputs {setup.input_shape}, {setup.num_classes} classes, {len(setup.train[1])} train / "
        f"{len(setup.test[1])} test); {config.clients} non-IID clients; seed {config.seed}; attack "
        f"iterations {config.iterations}, restarts {config.restarts}; {config.rounds} rounds x "
        f"{config.local_steps} local steps; utility runs: {html.escape(_engines(utility))}.</p>",
        "<h2>Summary</h2>",
        _table(head, summary, left=2),
        "<p class='note'>max PSNR: the strongest attack's mean PSNR over the victim batch (higher = more "
        "leaked; about 10 dB is noise-like, above 20 dB the image is recognisable). Accuracy: test accuracy "
        f"of the federated run of that defense on the whole test split, mean of its last {SMOOTH} rounds "
        "(non-IID federated training oscillates from round to round); 'vs none' is its difference from the "
        "undefended run in percentage points. HyperFL is personalised: each client's model (its private "
        "embedding and head) is scored on its own test examples, whose classes it trained on, an easier "
        "task than the global model's.</p>",
        "<h2>What the attacker saw</h2><ul>",
        "<li>An honest-but-curious server: one client's shared update (a batch-mean gradient of the "
        "round-start, untrained model, computed in train mode with dropout masks the server never sees) "
        "and that model, nothing else; attacks are run on batches of B training examples.</li>",
        "<li>DP settings: the attacked update is one DP-SGD step (per-example clipping to norm "
        f"{CLIP:g}, Gaussian noise of std sigma x {CLIP:g}) with the sigma of the full training run, whose "
        "epsilon is given below; one step alone has a smaller epsilon.</li>",
        "<li>top-k 90% is read as: 90% of the coordinates are dropped, the 10% of largest magnitude are "
        "sent (one global top-k over all parameters).</li>",
        f"<li>Sketches are count sketches to d/10 = {setup.sketch_dim} coordinates, fresh per client and "
        "round. The server knows the sketch seed (it needs it to de-sketch), so "
        "<code>sketched_inversion</code> "
        "inverts through the sketch; the other attacks see the de-sketched estimate R<sup>T</sup>s. "
        "sketch-dp is DP-SGD at epsilon 8 followed by the sketch (post-processing: the same epsilon).</li>",
        "<li>HyperFL: the client shares only the hypernetwork's gradient; its embedding and classifier head "
        "are private and drawn by the client. The attacker uses the initial embedding and head as its guess "
        "and is given the true labels (it cannot recover them: the head's gradient is not shared).</li>",
        "<li>Batch order cannot be recovered: reconstructions are matched to the victims by the assignment "
        "that maximises total PSNR before scoring.</li>",
        "<li>LPIPS is not reported: its network weights cannot be had offline and gradinfo never downloads "
        "at run time. PSNR and SSIM are torchmetrics'.</li></ul>",
    ]
    if skipped:
        pairs = [f"{html.escape(a)} on {html.escape(d)} ({html.escape(why)})" for a, d, why in skipped]
        parts.append("<p class='note'>Not run: " + "; ".join(pairs) + ".</p>")
    parts += ["<h2>Privacy-utility</h2>", f"<img src='{scatter}' alt='privacy-utility scatter'>"]
    if dp_rows:
        parts += [
            "<h2>Epsilon per DP setting</h2>",
            _table(
                [
                    "defense",
                    "target &epsilon;",
                    "noise multiplier &sigma;",
                    "&epsilon; (RDP)",
                    "&delta;",
                    "clip",
                    "sampling rate",
                    "steps",
                ],
                dp_rows,
            ),
            "<p class='note'>Each client takes DP-SGD steps on Poisson-sampled minibatches of its own data "
            "(each example joins a step with probability expected batch / client size; the rate shown is "
            "the largest over clients, so every client's epsilon is at most the one shown); sigma is the "
            "smallest meeting the target by dp-accounting's RDP accountant over rounds x local steps.</p>",
        ]
    parts.append("<h2>Reconstructions</h2>")
    for d, name in grids:
        if name is None:
            parts.append(
                f"<h3>{html.escape(d)}</h3><p class='note'>no image attack ran on {html.escape(d)}.</p>"
            )
        else:
            parts.append(
                f"<h3>{html.escape(d)}</h3><img src='{name}' alt='reconstructions under {html.escape(d)}'>"
            )
    parts += [
        "<h2>All attack cells</h2>",
        _table(
            ["defense", "B", "attack", "PSNR (dB)", "SSIM", "label acc.", "note", "seconds"], detail, left=3
        ),
        "<h2>Accuracy per round</h2>",
        _table(["defense", "test accuracy before training, then after each round"], curves, left=2),
        "<h2>Attacks</h2><ul>",
        *[f"<li><b>{html.escape(a)}</b>: {html.escape(ATTACKS[a])}</li>" for a in config.attacks],
        "</ul></body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def summary(result: JobResult) -> list[str]:
    """What ``gradinfo audit`` prints when its run returns: the time, cells computed and reused, report."""
    return [
        f"audit finished in {result.seconds:.0f} s ({len(result.computed)} cells computed, "
        f"{len(result.reused)} reused from an earlier run); report: {result.report}"
    ]
