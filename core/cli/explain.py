"""`behaviorlens explain`: why one user gets one item, as per-event attributions (IG, SHAP, LOO, attention).

``--tokens`` adds per-word attributions of the item's text (:mod:`core.explain.tokens`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.errors import DataError
from core.store.workspace import Workspace

COMMANDS = ("explain",)
METHOD_CHOICES = ("ig", "shap", "loo", "attention")
TARGET_CHOICES = ("fused", "engagement", "rating")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``explain`` on the top-level subparsers."""
    p = sub.add_parser("explain", parents=[common], help="attribute one user's score of one item to their events")
    p.add_argument("--run", required=True, help="run id (see `behaviorlens runs`)")
    p.add_argument("--user", required=True, help="the user's original ID (pseudonymized internally)")
    p.add_argument("--item", required=True, help="the item's original ID")
    p.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        default="ig",
        help="ig (Integrated Gradients), shap, loo (leave-one-out) or attention (a heuristic); default ig",
    )
    p.add_argument(
        "--target",
        choices=TARGET_CHOICES,
        default="fused",
        help="fused ranking score (the run's default weights), engagement log-probability or "
        "predicted rating; default fused",
    )
    p.add_argument(
        "--weights",
        metavar="engagement=0.7,rating=0.3",
        help="fusion weights of the fused target, or a preset name (default: the run's preset)",
    )
    p.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="IG: quadrature steps to start from (doubled until the completeness delta is within 1%%)",
    )
    p.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help="SHAP: value-function calls for histories too long for exact Shapley values",
    )
    p.add_argument(
        "--tokens",
        action="store_true",
        help="also attribute the same target to the words of the item's text (LayerIntegratedGradients "
        "on the text encoder's word embeddings; needs the run's encoder): adds 'tokens' to --json",
    )
    p.add_argument(
        "--event-text",
        metavar="P[,P...]",
        help="with --tokens: also attribute the own text (review, comment, query, tag) of the events at these "
        "positions of the explained window (0 = oldest) to its words",
    )


def _positions(value: str | None, tokens: bool) -> list[int]:
    """The event positions of ``--event-text`` (whole numbers >= 0, comma-separated); DataError naming a bad one."""
    if value is None:
        return []
    if not tokens:
        raise DataError("--event-text applies with --tokens only")
    out = []
    for part in value.split(","):
        if not part.strip().isdigit():
            raise DataError(f"--event-text {value!r}: {part.strip()!r} is not an event position (a whole number >= 0)")
        out.append(int(part))
    return out


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Method settings from the flags; a flag that does not fit the method is an error."""
    options: dict[str, Any] = {}
    if args.steps is not None:
        if args.method != "ig":
            raise DataError(f"--steps {args.steps} applies to --method ig only, not {args.method!r}")
        if args.steps < 2:
            raise DataError(f"--steps {args.steps}: expected a whole number >= 2")
        options["steps"] = args.steps
    if args.samples is not None:
        if args.method != "shap":
            raise DataError(f"--samples {args.samples} applies to --method shap only, not {args.method!r}")
        options["max_evals"] = args.samples
    return options


def run(args: argparse.Namespace, ws: Workspace, as_json: bool) -> int:
    """Dispatch ``explain`` (torch, captum and shap are imported only here)."""
    from core.runs.explain import explain_run, token_attributions_run
    from core.runs.fusion import resolve_weights
    from core.runs.run import open_run

    options, positions = _options(args), _positions(args.event_text, args.tokens)
    weights = None
    if args.weights is not None and args.target != "fused":
        raise DataError(f"--weights applies to --target fused only, not {args.target!r}")
    run_ = open_run(ws, args.run)
    if args.weights is not None:
        _, weights = resolve_weights(run_, args.weights)
    exp = explain_run(run_, args.user, args.item, args.method, args.target, weights, **options)
    out = exp.to_dict()
    if args.tokens:
        found = token_attributions_run(run_, args.user, args.item, args.target, weights, event_text_positions=positions)
        out["tokens"] = [t.to_dict() for t in found]
    if as_json:
        print(json.dumps(out, allow_nan=False))
    else:
        print(_text(out) + "".join("\n" + _tokens_text(t) for t in out.get("tokens", [])))
    return 0


def _text(exp: dict[str, Any]) -> str:
    """A readable table: one line per event, strongest attribution marked."""
    head = (
        f"{exp['method']} explanation of {exp['target']} for user {exp['user']!r}, item {exp['item']!r}"
        f"{' (' + exp['item_title'] + ')' if exp['item_title'] else ''}"
        f"{'  [heuristic: attention weights, not attributions]' if exp['heuristic'] else ''}"
    )
    lines = [
        head,
        f"score {exp['score']:.4g} with all events, {exp['baseline_score']:.4g} with all masked ({exp['units']})",
    ]
    for e in exp["events"]:
        title = e["title"] or e["item"]
        lines.append(
            f"  {e['position']:>3}  {e['time'][:16]}  {e['behavior']:<10} {title[:40]:<40} {e['attribution']:+.4g}"
        )
    delta = exp["completeness_delta"]
    lines.append(
        f"completeness delta {'n/a' if delta is None else format(delta, '.3g')}, "
        f"AOPC {_num(exp['aopc'])} vs random {_num(exp['aopc_random'])}, {exp['runtime_ms']:.0f} ms"
    )
    return "\n".join(lines)


def _tokens_text(tok: dict[str, Any], top: int = 10) -> str:
    """The words of one item text that move the score most, strongest first."""
    where = "the candidate" if tok["source"] == "candidate" else f"event {tok['position']}"
    if tok["source"] == "event_text":
        where = f"event {tok['position']}'s own text"
    baseline = tok["details"]["baseline"].removesuffix(" word embeddings")  # the pad token, e.g. [PAD]
    lines = [
        f"text tokens of item {tok['item']!r} ({where}; LayerIntegratedGradients on the encoder's word "
        f"embeddings, baseline {baseline}): score {tok['score']:.4g} with the text, {tok['baseline_score']:.4g} "
        f"without; completeness delta {_num(tok['completeness_delta'])} ({tok['details']['steps']} steps), "
        f"{tok['runtime_ms']:.0f} ms"
    ]
    words = sorted(tok["words"], key=lambda w: -abs(w[1]))[:top]
    if not words:
        lines.append("  (the item has no text)")
    lines += [f"  {word[:40]:<40} {value:+.4g}" for word, value in words]
    if len(tok["words"]) > top:
        lines.append(f"  ({top} strongest of {len(tok['words'])} words; --json has every word piece)")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else format(value, ".4g")
