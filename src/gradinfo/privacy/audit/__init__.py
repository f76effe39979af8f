"""``gradinfo audit``: how much a model's shared gradients reveal, and what each defense costs.

The job runs a grid of cells (defense x victim batch size x attack, plus a federated utility run per
defense) into an output folder, resumably, and writes ``report.html``. ``audit(config)`` is the Python
entry point; ``gradinfo audit`` the command line.
"""

from __future__ import annotations

from gradinfo.privacy.audit.config import ATTACKS, DEFENSES, AuditConfig, AuditConfigError, make_config
from gradinfo.privacy.audit.run import AuditError, AuditResult, run_audit


def audit(config: AuditConfig, *, progress: bool = True) -> AuditResult:
    """Run (or resume) the audit ``config`` describes and write its report.

    Args:
        config: an :class:`AuditConfig` (build one with :func:`make_config` to get every mistake at once).
        progress: show rich progress bars.

    Returns:
        An :class:`AuditResult`: the folder, the report's path, one row per cell, and how many cells were
        computed now and reused from an interrupted run.

    Raises:
        TypeError: ``config`` is not an ``AuditConfig``.
        AuditConfigError: the data or model do not fit the config (one line per mistake), before any work.
        AuditError: the output folder is foreign, made with another config, or corrupt.
    """
    if not isinstance(config, AuditConfig):
        raise TypeError(f"config must be an AuditConfig (see make_config), got {type(config).__name__}")
    return run_audit(config, progress=progress)


__all__ = [
    "ATTACKS",
    "DEFENSES",
    "AuditConfig",
    "AuditConfigError",
    "AuditError",
    "AuditResult",
    "audit",
    "make_config",
]
