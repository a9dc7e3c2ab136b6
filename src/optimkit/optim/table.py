"""The optimizer database as a table: rows for `optimkit optimizers`, JSON, and the README's
markdown table (one renderer, so the README cannot drift from the database).

The database imports every module of `optimkit.optim` to find the optimizers, this one too,
so it reads the database only when called."""

from __future__ import annotations

from typing import Any

from optimkit.optim.spec import Hyperparameter, OptimizerSpec

#: the columns of `rows()` and of the markdown table, in order
COLUMNS = ("name", "class", "summary", "hyperparameters", "reference", "tolerance")


def value_text(value: Any) -> str:
    """A default as text: ``0.001``, ``1e-08``, ``None``, ``True``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _hyper(h: Hyperparameter) -> dict[str, Any]:
    return {
        "name": h.name,
        "flag": h.flag,
        "argument": h.arg,
        "index": h.index,
        "kind": h.kind,
        "per_member": h.member,
        "default": h.default,
        "valid": h.valid_text(),
        "tune": None if h.tune is None else {"low": h.tune[0], "high": h.tune[1], "log": h.log},
        "choices": list(h.choices) or None,
        "doc": h.doc,
    }


def _spec(cls: type) -> OptimizerSpec:
    return cls.spec  # type: ignore[attr-defined]


def records() -> list[dict[str, Any]]:
    """Every optimizer with everything the database says about it (for ``--json``)."""
    from optimkit.optim.database import OPTIMIZERS

    out = []
    for name, cls in OPTIMIZERS.items():
        spec = _spec(cls)
        out.append(
            {
                "name": name,
                "class": f"{cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}",
                "summary": spec.summary,
                "family": spec.family,
                "hyperparameters": [_hyper(h) for h in spec.hyperparameters],
                "reference": spec.reference,
                "package": spec.package,
                "tolerance": spec.tolerance,
                "tolerance_reason": spec.tolerance_reason or None,
                "closure": spec.closure,
                "variants": [
                    {"name": v.name, "summary": v.summary, "fixed": dict(v.fixed)}
                    for v in spec.variants
                ],
                "compare_default": list(spec.compare),
                "paper": spec.paper or None,
            }
        )
    return out


def rows() -> list[dict[str, str]]:
    """One row of text cells per optimizer (`COLUMNS`): the per-member hyperparameters with
    their defaults, the reference and the package that ships it, the test tolerance."""
    out = []
    for r in records():
        hyper = ", ".join(
            f"{h['name']}={value_text(h['default'])}"
            for h in r["hyperparameters"]
            if h["per_member"]
        )
        summary = r["summary"]
        if r["variants"]:
            summary += " (variants: " + ", ".join(v["name"] for v in r["variants"]) + ")"
        package = r["package"] or "torch"
        out.append(
            {
                "name": r["name"],
                "class": r["class"],
                "summary": summary,
                "hyperparameters": hyper or "—",
                "reference": f"{r['reference']} ({package})",
                "tolerance": f"{r['tolerance']:g}",
            }
        )
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The README's optimizer table (GitHub markdown), ending in a newline."""
    heads = {
        "name": "name",
        "class": "class",
        "summary": "summary",
        "hyperparameters": "per-member hyperparameters (defaults)",
        "reference": "tested against (package)",
        "tolerance": "float64 tolerance",
    }
    lines = [
        "| " + " | ".join(heads[c] for c in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows():
        cells = [f"`{row['name']}`", f"`{row['class']}`"]
        cells += [_cell(row[c]) for c in COLUMNS[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
