"""Claim check for GAPrune (paper 28): one-shot 50% pruning of MiniLM keeps in-domain retrieval.

Set-up (fixed before the first run; seed 0, confirmed on seeds 1 and 2):

- Model: the packaged all-MiniLM-L6-v2 encoder (eager attention) in a :class:`SentenceEncoder`.
- Domain: templated finance statements. A pair is a query naming a sector, a metric, a direction and a
  cause ("Why did the bank's free cash flow fall? higher interest rates") and a passage that says the same
  with the domain's paraphrases ("The lender said its cash generated after capital spending declined last
  quarter, citing more expensive borrowing."); 8 x 12 x 2 x 10 slot combinations, seeded shuffle. The
  first 32 pairs calibrate, the next 128 (other combinations) are held out for evaluation.
- General: 32 pairs (docstring summary line, next paragraph) from the Python standard library's sources
  (the ``text`` dataset's files), seeded shuffle.
- Gradients: :func:`info_nce` (scale 20) with in-batch negatives over groups of 4 pairs.
- Pruning: 50% of the encoder's MLP weights (the official default scope), global budget, by GAPrune's DAI,
  by magnitude ``|w|`` and by domain Fisher only ``F_dom |w|`` (the same ``F_dom``), both also global.
- Metric: MRR (x100) of the 128 held-out queries against their 128 passages.
- General retention: MRR (x100) of 128 held-out docstring pairs (the ones after the 32 that calibrate).

Pass (fixed before running; margin from the paper's abstract, "maintains performance within 2.5% of dense
models in one-shot pruning at 50% sparsity, while outperforming all baselines"; general retention from the
paper digest's proof, "DAI general accuracy >= Fisher-only"):
``MRR(GAPrune) >= 0.975 MRR(dense)``, ``MRR(GAPrune) > MRR(magnitude)`` and ``> MRR(Fisher only)`` on the
finance pairs, and ``MRR_general(GAPrune) >= MRR_general(Fisher only)``.

A first version (margin 5 MRR points, no general figure) measured (MRR x100; dense / GAPrune / magnitude /
Fisher only), GAPrune with the official command line's defaults (no per-tensor post-processing, global
budget): seed 0 55.4 / 49.9 / 50.2 / 59.2, seed 1 52.4 / 46.7 / 46.7 / 53.7. The Fisher terms
(``|F_dom - F_gen| |w| ~ 1e-6``) and the alignment factor (``|0.2 a| <= 2e-5``) are tiny next to
``0.5 sqrt|w| ~ 0.1``, so DAI ranks by magnitude: its mask differs from global magnitude's in 298 of 3.5M
weights (seed 0), hence MRR within 0.3 of magnitude and far below Fisher only. This is what the paper's DAI
equation computes as the digest gives it (``softplus((F_dom |w| - beta F_gen |w|) clamp(1 + 0.2 a) +
c sqrt|w|)``: no normalisation of the Fisher term before the ``sqrt|w|`` prior is added, so no normalised
variant of the equation is offered); the only normalisation is the constructor's per-tensor z-score +
sigmoid of DAI itself, which at seed 0 gave 52.7 (per-tensor ranks 53.2): a per-tensor budget split by
magnitude, still below Fisher only. The method therefore stays ``implemented``. About 110 s per seed on one
thread of a loaded machine.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from transformers import AutoModel

from gradinfo.claims import ClaimResult
from gradinfo.compress.gaprune import SentenceEncoder, contrastive_batches, gaprune
from gradinfo.datasets.pairs import docstring_pairs, finance_pairs
from gradinfo.models import Encoder, minilm, minilm_embed, minilm_path

PAPER_EFFECT = (
    "abstract: one-shot 50% sparsity within 2.5% of dense on FinMTEB and ChemTEB, outperforming all "
    "baselines (+4.51% / +1.73% after 100 retraining steps)"
)
SLOW = True

SPARSITY, N_CAL, N_EVAL, GROUP, KEEP = 0.5, 32, 128, 4, 0.975


def mrr(model: SentenceEncoder, tokenizer: object, pairs: list[tuple[str, str]]) -> float:
    """Mean reciprocal rank (x100) of each query's passage among all passages of ``pairs``."""
    encoder = Encoder(model=model.encoder, tokenizer=tokenizer, path=minilm_path())
    q = minilm_embed([a for a, _ in pairs], encoder=encoder)  # [N, 384]
    p = minilm_embed([b for _, b in pairs], encoder=encoder)  # [N, 384]
    sim = q @ p.T  # [N, N]
    rank = (sim > sim.diag().unsqueeze(1)).sum(1) + 1  # [N]
    return float((1.0 / rank.double()).mean()) * 100


def _prune_global(model: nn.Module, scores: dict[str, Tensor]) -> nn.Module:
    """A copy of ``model`` with the ``SPARSITY`` share of lowest ``scores`` (over all tensors) set to 0."""
    pruned = copy.deepcopy(model)
    named = dict(pruned.named_parameters())
    flat = torch.cat([s.reshape(-1) for s in scores.values()])  # [N]
    drop = torch.zeros(flat.numel(), dtype=torch.bool)
    drop[torch.argsort(flat, stable=True)[: int(SPARSITY * flat.numel())]] = True
    start = 0
    with torch.no_grad():
        for name, s in scores.items():
            named[name].masked_fill_(drop[start : start + s.numel()].reshape(s.shape), 0.0)
            start += s.numel()
    return pruned


def check(seed: int = 0) -> ClaimResult:
    """Prune MiniLM by DAI, magnitude and Fisher only; figures: MRR of each and of the dense model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: one intra-op thread
    try:
        return _check(seed)
    finally:
        torch.set_num_threads(threads)


def _check(seed: int) -> ClaimResult:
    tokenizer = minilm().tokenizer
    bert = AutoModel.from_pretrained(minilm_path(), local_files_only=True, attn_implementation="eager").eval()
    model = SentenceEncoder(bert, pad_id=tokenizer.pad_token_id)
    finance = finance_pairs(seed)
    calibration, held_out = finance[:N_CAL], finance[N_CAL : N_CAL + N_EVAL]
    domain = contrastive_batches(tokenizer, calibration, group=GROUP)
    docstrings = docstring_pairs(seed, N_CAL + N_EVAL)
    general = contrastive_batches(tokenizer, docstrings[:N_CAL], group=GROUP)
    general_held_out = docstrings[N_CAL:]

    pruned, report = gaprune(model, domain, general, SPARSITY)
    weights = {n: p.detach() for n, p in model.named_parameters() if n in report.scores}
    magnitude = _prune_global(model, {n: w.abs() for n, w in weights.items()})
    fisher_only = _prune_global(model, {n: report.fisher_domain[n] * w.abs() for n, w in weights.items()})

    gone = {n: dict(pruned.named_parameters())[n].detach() == 0 for n in weights}
    gone_mag = {n: dict(magnitude.named_parameters())[n].detach() == 0 for n in weights}
    shared = sum(int((gone[n] & gone_mag[n]).sum()) for n in weights)
    figures = {
        "mrr_dense": mrr(model, tokenizer, held_out),
        "mrr_gaprune": mrr(pruned, tokenizer, held_out),
        "mrr_magnitude": mrr(magnitude, tokenizer, held_out),
        "mrr_fisher_only": mrr(fisher_only, tokenizer, held_out),
        "general_mrr_dense": mrr(model, tokenizer, general_held_out),
        "general_mrr_gaprune": mrr(pruned, tokenizer, general_held_out),
        "general_mrr_magnitude": mrr(magnitude, tokenizer, general_held_out),
        "general_mrr_fisher_only": mrr(fisher_only, tokenizer, general_held_out),
        "sparsity": report.pruned / report.total,
        "mask_overlap_with_magnitude": shared / max(1, report.pruned),
    }
    passed = (
        figures["mrr_gaprune"] >= KEEP * figures["mrr_dense"]
        and figures["mrr_gaprune"] > figures["mrr_magnitude"]
        and figures["mrr_gaprune"] > figures["mrr_fisher_only"]
        and figures["general_mrr_gaprune"] >= figures["general_mrr_fisher_only"]
    )
    return ClaimResult(
        method="gaprune",
        claim=(
            f"50% of MiniLM's MLP weights pruned: held-out finance MRR(GAPrune) >= {KEEP:g} MRR(dense) "
            "and > MRR(magnitude) and > MRR(domain Fisher only); general MRR(GAPrune) >= Fisher only's"
        ),
        passed=bool(passed),
        figures=figures,
        seed=seed,
    )
