"""What a person reads of a prune run: ``report.json``, ``report.md`` and the command line's summary."""

from __future__ import annotations

from typing import Any

from rich.table import Table

import gradinfo.compress.prune.metrics as metrics
from gradinfo import __version__
from gradinfo.compress.prune.config import PruneConfig
from gradinfo.compress.prune.methods import METHODS
from gradinfo.core.job import JobResult


def build_report(config: PruneConfig, dense: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    """The content of ``report.json``: the config, the dense and pruned (and recovered) measurements, the
    changes they show, and what went.

    Args:
        config: the run's config.
        dense: ``dense.json``'s measurements.
        stage: ``pruned.json``'s content.
    """
    final = stage["recovered"] or stage["after"]
    metric = next(k for k in ("perplexity", "accuracy", "mrr") if k in dense)
    return {
        "job": config.job,
        "gradinfo": __version__,
        "config": config.fingerprint(),
        "method": METHODS[config.method].removes,
        "metric": metric,
        "dense": dense,
        "pruned": stage["after"],
        "recovered": stage["recovered"],
        "parameters_before": dense["parameters"],
        "parameters_after": final["parameters"],
        "nonzero_before": dense["nonzero"],
        "nonzero_after": final["nonzero"],
        f"{metric}_before": dense[metric],
        f"{metric}_after": stage["after"][metric],
        f"{metric}_ratio": stage["after"][metric] / dense[metric] if dense[metric] else None,
        "latency_unit": "example" if metric == "accuracy" else "token",
        "latency_ms_before": dense["latency_ms"],
        "latency_ms_after": final["latency_ms"],
        "prune_seconds": stage["prune_seconds"],
        "groups": stage["groups"],
        "model_format": stage["format"],
        "reload_max_abs_difference": stage["reload_max_abs_difference"],
    }


def markdown(report: dict[str, Any]) -> str:
    """``report.md``: a table of the dense, pruned (and recovered) model, then what went."""
    c, metric, unit = report["config"], report["metric"], report["latency_unit"]
    rows = [("dense", report["dense"]), ("pruned", report["pruned"])]
    if report["recovered"] is not None:
        rows.append((f"after {c['lora_steps']} LoRA steps", report["recovered"]))
    timed = f"ms, median of {metrics.TIMED_PASSES}"
    lines = [
        f"# gradinfo prune: {c['method']} on {c['model']}",
        "",
        f"{report['method']}. Ratio {c['ratio']:g}, calibration `{c['calibration']}` "
        f"({c['examples']} examples), seed {c['seed']}; builtin training steps {c['train_steps']}. "
        f"gradinfo {report['gradinfo']}.",
        "",
        f"| model | parameters | nonzero | {metric} | latency per {unit} ({timed}) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {m['parameters']:,} | {m['nonzero']:,} | {m[metric]:.4g} | {m['latency_ms']:.4g} |"
            for name, m in rows
        ),
        "",
        f"Pruning took {report['prune_seconds']:.2f} s. The saved model ({report['model_format']}, folder "
        "`model/`, reload with `gradinfo.compress.prune.load_job_model(out)`) reproduces the pruned outputs "
        f"to {report['reload_max_abs_difference']:.2e}.",
        "",
        "## What went",
        "",
        *_went(report["groups"]),
        "",
        "Every index and share is in `report.json` under `groups`.",
        "",
    ]
    return "\n".join(lines)


def _went(groups: dict[str, Any]) -> list[str]:
    """Markdown lines summarising what a method removed."""
    if "removed" in groups:
        return [
            f"- {key.replace('.', ' ', 2)}: {len(idx)} removed"
            + (f" ({', '.join(map(str, idx[:12]))}{', ...' if len(idx) > 12 else ''})" if idx else "")
            for key, idx in groups["removed"].items()
        ]
    if "layers" in groups:
        return [
            f"- layer {g['layer']}: ratio {g['ratio']:.3f}, MLP width {g['mlp_width']}, query-key dim "
            f"{g['qk_dim']}, value-output rank {g['vo_rank']}"
            for g in groups["layers"]
        ]
    return [f"- overall sparsity {groups['sparsity']:.3f}"] + [
        f"- `{name}`: {share:.3f} zeroed" for name, share in groups["pruned_share_per_weight"].items()
    ]


def summary(result: JobResult) -> list[Any]:
    """What ``gradinfo prune`` prints when it returns: the dense and pruned figures, then where things are."""
    r = result.rows[0]
    metric = r["metric"]
    table = Table("", "parameters", "nonzero", metric, f"ms per {r['latency_unit']}")
    table.add_row(
        "dense", f"{r['parameters_before']:,}", f"{r['nonzero_before']:,}", f"{r[f'{metric}_before']:.4g}",
        f"{r['latency_ms_before']:.4g}",
    )  # fmt: skip
    final = r["recovered"] or r["pruned"]
    table.add_row(
        "pruned" + (" + LoRA" if r["recovered"] else ""), f"{r['parameters_after']:,}",
        f"{r['nonzero_after']:,}", f"{final[metric]:.4g}", f"{r['latency_ms_after']:.4g}",
    )  # fmt: skip
    return [
        table,
        f"prune finished in {result.seconds:.0f} s ({len(result.reused)} stages reused from an earlier run); "
        f"model: {result.out / 'model'}, report: {result.report}",
    ]
