"""The curated public API of ``core``: pinned, every name real, and ``import core`` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import core

REPO = Path(__file__).resolve().parents[1]
PUBLIC = [
    "ArtifactError",
    "BehaviorLensError",
    "DataError",
    "Explanation",
    "IngestOptions",
    "IngestReport",
    "InfluenceReport",
    "InfluenceSettings",
    "Labels",
    "ModelConfig",
    "NotFittedError",
    "NotFoundError",
    "Recommender",
    "Run",
    "SIGNALS",
    "Settings",
    "SynthConfig",
    "TrainConfig",
    "UnusableFileError",
    "Workspace",
    "WorkspaceError",
    "attributions_csv",
    "behavior_ablation",
    "counterfactual_run",
    "counterfactual_set",
    "ensure_sample_dataset",
    "evaluate_fused",
    "evaluate_run",
    "explain_run",
    "generate",
    "global_influence",
    "html_report",
    "influence_csv",
    "influence_run",
    "inspect",
    "list_presets",
    "list_runs",
    "normalize_weights",
    "open_run",
    "parse_weights",
    "recommend_fused",
    "recommend_run",
    "resume_run",
    "save_preset",
    "summarize",
    "token_attributions",
    "token_attributions_run",
    "train_run",
]


def test_the_public_api_is_pinned() -> None:
    """A change of the public names is deliberate: update this list and the README together."""
    assert core.__all__ == sorted(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves_to_the_object_of_that_name(name: str) -> None:
    value = getattr(core, name)
    assert name in dir(core)
    assert value == core.SIGNALS if name == "SIGNALS" else value.__name__ == name


def test_no_public_name_shadows_a_package_or_module_of_core() -> None:
    """``core.X`` must mean one thing: after ``import core.X`` the submodule would replace the export."""
    children = {p.stem for p in (REPO / "core").iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert not children & set(PUBLIC)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        core.no_such_thing  # noqa: B018


def test_import_core_loads_neither_torch_nor_streamlit() -> None:
    code = "import sys, core; print(sorted(m for m in ('torch', 'streamlit', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
