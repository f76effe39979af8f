"""The catalogue: every method gradinfo covers, one or more per paper in ``shared/papers`` (1..51).

Each row below is a method that is in scope but not implemented yet (status ``planned``): its short
name, family and mechanism in one line. A method that gets implemented is registered with
``@gradinfo.core.registry.register`` in its own module inside ``gradinfo.<family>``, and its row here
is deleted (registering a name that is still planned raises ``ValueError``).

:func:`all_methods` imports every family package that exists, so their registrations run, and
returns the whole registry; :func:`markdown_table` renders it for the README.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

from gradinfo.core.record import Record
from gradinfo.core.registry import FAMILIES, Method, plan, registered

README_START = "<!-- methods:start -->"
README_END = "<!-- methods:end -->"

# (paper, name, family, mechanism in one line)
# fmt: off
_PLANNED: tuple[tuple[int, str, str, str], ...] = (
    (1, "yolov9_pgi", "train",
     "Aux reversible branch feeds 0.25-weighted aux-head gradients into the main backbone; removed at test"),
    (3, "gradctrl", "generate",
     "Moves a GAN latent along a latent-classifier gradient, zeroing channels excluded attributes use"),
    (6, "sketched_gd", "optim",
     "Clients send R_t·Δ under a fresh shared sketch per round; the server averages, de-sketches by R_t^T"),
    (7, "greater", "adversarial",
     "Picks each prompt token among LM top-k candidates by the answer-loss gradient through reasoning"),
    (10, "semantic_control", "generate",
     "Reweights next tokens by a verifier's first-order Taylor step along its embedding gradient"),
    (11, "sada", "generate",
     "Skips diffusion network calls when the ODE-drift residual times its second difference is <= 0"),
    (12, "mhaf_yolo", "train",
     "Multi-branch auxiliary fusion neck giving output layers more gradient paths; re-param. kernels"),
    (14, "sitta", "generate",
     "Gradient-free least-squares/Procrustes map from CLIP embeddings into an LM's input embeddings"),
    (15, "advprompter", "adversarial",
     "Trains a prompter LLM on suffixes found by beam search on target-loss forward passes only"),
    (16, "gspo", "adversarial",
     "Greedy segment prompt search: gradient w.r.t. a one-hot over candidate segments picks swaps"),
    (18, "goracs", "select",
     "Coreset by optimal transport to validation data, with costs lowered by each sample's gradient norm"),
    (20, "local_style_fool", "adversarial",
     "Stylises video regions with the most surrogate input-gradient mass; NES-gradient refinement"),
    (21, "mra", "train",
     "Latent-conditioned multi-agent policies (meta representations) adapted by first-order steps"),
    (22, "erase_and_check", "adversarial",
     "Certified safety filter over erased subsequences; GradEC optimises the erasure mask by gradient"),
    (23, "smi_gradient", "adversarial",
     "No-box skeleton attack: surrogate input gradient chained through a time-varying AR(2) motion model"),
    (24, "gradient_harmonization", "transform",
     "Projects conflicting per-sample cross-modal loss gradients (cos < 0) onto each other's normal plane"),
    (27, "grad_eclip", "explain",
     "CLIP heat map: gradient of the image-text cosine at [CLS] weights loosened-attention value features"),
    (27, "mmel", "explain",
     "Grad-ECLIP maps from several layers and scales fused with learned layer weights"),
    (29, "r_mtgb", "train",
     "Multi-task gradient boosting on negative gradients; per-task outlier weights learned by gradient"),
    (33, "doge", "transform",
     "Model merging as gradient descent on a task-vector objective, projected off the shared subspace"),
    (34, "recoding", "generate",
     "Moves an RNN LM's hidden state along the gradient of an error signal (perplexity, uncertainty)"),
    (35, "leaf", "train",
     "Prunes prompt tokens salient (input-embedding gradient) to the student but not the teacher"),
    (36, "leakgan", "generate",
     "Text GAN: leaked discriminator features guide a Manager/Worker policy trained by policy gradient"),
    (38, "gradient_snr", "explain",
     "Per-layer gradient mean norm over standard deviation across minibatches: drift vs diffusion phases"),
    (38, "info_plane", "explain",
     "Binned mutual information I(X;T) and I(T;Y) of every hidden layer through training"),
    (39, "pixel_grad_clip", "transform",
     "Caps each pixel's gradient at L∞ norm c while keeping its RGB direction"),
    (40, "doco", "generate",
     "Diffusion unlearning by adversarial domain correction; unlearning gradient projected on conflict"),
    (41, "promptpg", "select",
     "Selects in-context examples with a policy trained by REINFORCE on the LLM's answer correctness"),
    (42, "codiemb", "train",
     "Single-task batches keep IR and STS gradients apart; fine-tunes fused by delta-magnitude weights"),
    (45, "evodiff", "generate",
     "Diffusion solver whose multistep correction minimises the variance of data-prediction differences"),
    (46, "neurofovea", "generate",
     "Gradient-free foveated metamers: per-region AdaIN texture blend (contrast to gradient descent)"),
    (47, "viws_net", "train",
     "Gradient reversal (-α·grad) behind a weather-type discriminator makes features weather-agnostic"),
    (48, "diffroar", "explain",
     "Tests input-gradient attributions by retraining on top-k vs bottom-k attributed pixels"),
    (49, "grmp_iqa", "transform",
     "Removes from the quality-loss gradient its part along the semantic-preservation gradient when aligned"),
    (50, "ignore_k", "transform",
     "Zeroes the top-k% largest-magnitude entries of each update to dilute priming by new data"),
    (51, "dreamsalon", "generate",
     "Staged diffusion editing: stops editing when the change in predicted noise's high frequencies drops"),
)
# fmt: on

for _paper, _name, _family, _summary in _PLANNED:
    plan(_name, family=_family, paper=_paper, summary=_summary)


def all_methods() -> list[Method]:
    """Every method gradinfo knows, ordered by paper then name.

    Imports each family package ``gradinfo.<family>`` that exists, so the ``@register`` decorators in
    its modules run, then returns the registry's contents.
    """
    for family in FAMILIES:
        package = f"gradinfo.{family}"
        if importlib.util.find_spec(package) is not None:
            importlib.import_module(package)
    return registered()


def status_cell(method: Method) -> str:
    """A method's status as the README shows it: what is missing for a component, the recorded seeds else."""
    if method.status == "component":
        return f"component: {method.missing}"
    record = method.record
    if record is None or method.status == "planned":
        return method.status
    passing = sum(run.passed for run in record.seeds.values())
    return f"{method.status} ({passing} of {len(record.seeds)} recorded seeds pass)"


def markdown_table(methods: Iterable[Method]) -> str:
    """The README's method table: columns #, method, family, paper (title, year), status; sorted by paper.

    Returns:
        The table as GitHub-flavoured markdown, one row per method, ending without a newline.
    """
    lines = ["| # | method | family | paper | status |", "|---:|---|---|---|---|"]
    for m in sorted(methods, key=lambda m: (m.paper, m.name)):
        title = m.title.replace("|", "\\|")
        lines.append(f"| {m.paper} | `{m.name}` | {m.family} | {title} ({m.year}) | {status_cell(m)} |")
    return "\n".join(lines)


def claims_markdown(methods: Iterable[Method]) -> str:
    """``docs/claims.md``: the claim standard's verdict per method, with every recorded seed's figures.

    Generated from the committed claim record (:mod:`gradinfo.core.record`) by ``scripts/update_readme.py``;
    ``tests/test_readme.py`` fails while the file differs.
    """
    checked = [m for m in sorted(methods, key=lambda m: (m.paper, m.name)) if m.claim is not None]
    lines = [
        "# Claim record",
        "",
        "Generated by `python scripts/update_readme.py` from `src/gradinfo/claims/record.json`, which",
        "`gradinfo reproduce NAME --seeds 0,1,2 --record` and `gradinfo reproduce --all --seeds 0,1,2`",
        "write. A method is `verified` when at least 3 seeds are recorded and its claim held at every one",
        "(the claim standard in `docs/design.md`); a change to its or its claim's sources invalidates it.",
        "",
        "| # | method | status | seeds passing | criterion | paper's effect |",
        "|---:|---|---|---|---|---|",
    ]
    for m in checked:
        record = m.record
        seeds = "none recorded" if record is None else _passing(record)
        criterion = "" if record is None else record.criterion.replace("|", "\\|")
        effect = "" if record is None else record.paper_effect.replace("|", "\\|")
        lines.append(f"| {m.paper} | `{m.name}` | {m.status} | {seeds} | {criterion} | {effect} |")
    for m in checked:
        record = m.record
        if record is None:
            continue
        lines += [
            "",
            f"## {m.name}",
            "",
            f"Sources digest `{record.digest}`; verdict **{record.verdict}**.",
            "",
        ]
        names = sorted({k for run in record.seeds.values() for k in run.figures})
        lines.append("| seed | passed | " + " | ".join(f"`{n}`" for n in names) + " |")
        lines.append("|---:|---|" + "---:|" * len(names))
        for seed, run in sorted(record.seeds.items()):
            values = " | ".join(f"{run.figures[n]:.4g}" if n in run.figures else "" for n in names)
            lines.append(f"| {seed} | {'yes' if run.passed else 'no'} | {values} |")
    return "\n".join(lines) + "\n"


def _passing(record: Record) -> str:
    passed = [s for s, run in sorted(record.seeds.items()) if run.passed]
    return f"{len(passed)} of {len(record.seeds)} ({', '.join(map(str, sorted(record.seeds)))})"


def with_method_table(readme: str, methods: Iterable[Method]) -> str:
    """``readme`` with the block between ``README_START`` and ``README_END`` replaced by the method table.

    Raises:
        ValueError: ``readme`` does not contain the two markers, once each and in order.
    """
    if readme.count(README_START) != 1 or readme.count(README_END) != 1:
        raise ValueError(f"README must contain {README_START} and {README_END} once each")
    head, rest = readme.split(README_START)
    if README_END not in rest:
        raise ValueError(f"README has {README_END} before {README_START}")
    _, tail = rest.split(README_END)
    return f"{head}{README_START}\n{markdown_table(methods)}\n{README_END}{tail}"
