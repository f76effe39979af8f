"""Text pairs built offline for retrieval and similarity tasks (no downloads).

- :func:`finance_pairs`: (query, passage) pairs from a finance template vocabulary (sector, metric,
  direction, cause), each passage paraphrasing its query with synonyms, in a seeded order; a narrow domain
  whose held-out pairs test in-domain retrieval (GAPrune's domain set).
- :func:`docstring_pairs`: (summary line, next paragraph) pairs from the docstrings of the Python standard
  library's source files; general-purpose text (GAPrune's general set).
"""

from __future__ import annotations

import ast
import random
import re

from gradinfo.datasets.text import stdlib_files

_SECTORS = (
    ("bank", ("lender", "banking group")),
    ("insurer", ("underwriter", "insurance group")),
    ("utility", ("power company", "electricity provider")),
    ("miner", ("mining group", "metals producer")),
    ("retailer", ("store chain", "merchant")),
    ("airline", ("carrier", "air transport operator")),
    ("drugmaker", ("pharmaceutical firm", "medicine maker")),
    ("automaker", ("car manufacturer", "vehicle maker")),
)
_METRICS = (
    ("revenue", ("top-line sales", "total revenue")),
    ("net income", ("bottom-line profit", "net earnings")),
    ("operating margin", ("operating profit as a share of sales", "margin on operations")),
    ("EBITDA", ("earnings before interest, taxes, depreciation and amortization", "adjusted EBITDA")),
    ("free cash flow", ("cash generated after capital spending", "FCF")),
    ("earnings per share", ("diluted EPS", "profit per share")),
    ("dividend", ("payout to shareholders", "quarterly distribution per share")),
    ("debt-to-equity ratio", ("leverage", "ratio of total liabilities to shareholder equity")),
    ("return on equity", ("ROE", "profitability relative to book value")),
    ("capital expenditure", ("capex", "spending on property and equipment")),
    ("tier 1 capital ratio", ("core capital adequacy", "CET1 ratio")),
    ("gross margin", ("gross profit margin", "markup over cost of goods sold")),
)
_DIRECTIONS = (("rise", ("increased", "climbed", "jumped")), ("fall", ("declined", "dropped", "slipped")))
_CAUSES = (
    ("higher interest rates", ("the central bank tightening policy", "more expensive borrowing")),
    ("a weaker dollar", ("currency depreciation", "a softer greenback")),
    ("supply chain disruptions", ("shipping bottlenecks", "delays from suppliers")),
    ("lower commodity prices", ("cheaper raw materials", "a slump in input costs")),
    ("strong consumer demand", ("robust household spending", "buoyant customer orders")),
    ("a legal settlement", ("a litigation charge", "a payment to resolve lawsuits")),
    ("cost cutting", ("restructuring savings", "leaner operations")),
    ("an acquisition", ("the purchase of a rival", "a takeover deal")),
    ("rising wages", ("labour cost inflation", "higher pay for staff")),
    ("tax changes", ("a revised tax regime", "new fiscal rules")),
)
_QUERIES = (
    "Which {s} saw its {m} {d} because of {c}?",
    "Why did the {s}'s {m} {d}? {c}",
    "{s} {m} {d} due to {c}",
)
_PASSAGES = (
    "The {s} said its {m} {d} last quarter, citing {c}.",
    "Management at the {s} explained that {m} {d}, mainly on {c}.",
    "{c} meant the {s} reported that {m} {d}.",
)


def finance_pairs(seed: int) -> list[tuple[str, str]]:
    """Every (query, passage) pair of the finance template vocabulary, in a seeded order."""
    rng = random.Random(seed)
    combos = [(s, m, d, c) for s in _SECTORS for m in _METRICS for d in _DIRECTIONS for c in _CAUSES]
    rng.shuffle(combos)
    pairs = []
    for s, m, d, c in combos:
        query = rng.choice(_QUERIES).format(s=s[0], m=m[0], d=d[0], c=c[0])
        passage = rng.choice(_PASSAGES).format(
            s=rng.choice(s[1]), m=rng.choice(m[1]), d=rng.choice(d[1]), c=rng.choice(c[1])
        )
        pairs.append((query, passage[0].upper() + passage[1:]))
    return pairs


def docstring_pairs(seed: int, count: int) -> list[tuple[str, str]]:
    """``count`` (summary line, next paragraph) pairs from stdlib docstrings, in a seeded order."""
    pairs = []
    for path in stdlib_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                paragraphs = [" ".join(p.split()) for p in (doc or "").split("\n\n")]
                if len(paragraphs) < 2:
                    continue
                head, body = paragraphs[0], paragraphs[1]
                if 20 <= len(head) <= 200 and 40 <= len(body) <= 400 and not re.search(">>>", body):
                    pairs.append((head, body))
    random.Random(seed).shuffle(pairs)
    return pairs[:count]
