"""Recipes: YAML ↔ dataclasses, dotted overrides, clear errors naming the key, the recipe hash."""

from pathlib import Path

import pytest

from distrain.config import Recipe, RecipeError, explain, load_recipe, parse_overrides

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_default_recipe_file_equals_embedded_defaults():
    assert load_recipe(RECIPES / "tiny-gpt" / "swarm.yaml") == Recipe()


def test_overrides_are_typed_and_change_the_hash():
    recipe = load_recipe(None, ["--inner.steps", "20", "--outer.nesterov=false", "--inner.lr", "1e-3"])
    assert (recipe.inner.steps, recipe.outer.nesterov, recipe.inner.lr) == (20, False, 1e-3)
    assert recipe.hash() != Recipe().hash()


def test_local_sections_do_not_change_the_hash():
    """Validators may score differently and still train with the same miners."""
    assert (
        load_recipe(None, {"validator.ema": "0.9", "chain.path": "/tmp/x.sqlite"}).hash() == Recipe().hash()
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--inner.stepz", "3"], "'inner.stepz' is unknown (did you mean 'steps'?)"),
        (["--innr.steps", "3"], "is unknown (did you mean 'inner'?)"),
        (["--inner.steps", "three"], "'inner.steps' expects int"),
        (["--inner.steps", "0"], "'inner.steps' has an invalid value"),
        (["--outer.nesterov", "maybe"], "'outer.nesterov' expects bool"),
        (["--outer.average", "median"], "'outer.average' must be one of 'all', 'senders', got 'median'"),
        (["--validator.proof_of_work", "replay"], "'validator.proof_of_work' must be one of 'loss', 'rerun'"),
        (["--validator.rerun_steps", "0"], "'validator.rerun_steps' has an invalid value"),
        (["--validator.rerun_margin", "-1"], "'validator.rerun_margin' has an invalid value"),
        (["--validator.rerun_median_share", "1"], "'validator.rerun_median_share' has an invalid value"),
        (["--validator.trust_ema", "1.5"], "'validator.trust_ema' has an invalid value"),
        (["--model.d_model", "130"], "'model.d_model' must be a multiple"),
        (["--data.page_tokens", "32"], "'data.page_tokens' has an invalid value"),
        (["--inner.steps"], "needs a value"),
        (["steps", "3"], "recipe overrides look like --section.key VALUE"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(RecipeError, match=None) as error:
        load_recipe(None, overrides)
    assert message in str(error.value)


def test_bad_yaml_files(tmp_path):
    (tmp_path / "section.yaml").write_text("inner: 3\n")
    (tmp_path / "broken.yaml").write_text("inner: [\n")
    (tmp_path / "unknown.yaml").write_text("trainer:\n  steps: 3\n")
    (tmp_path / "float.yaml").write_text("inner:\n  steps: 2.5\n")
    with pytest.raises(RecipeError, match="section 'inner' must be a mapping"):
        load_recipe(tmp_path / "section.yaml")
    with pytest.raises(RecipeError, match="is not valid YAML"):
        load_recipe(tmp_path / "broken.yaml")
    with pytest.raises(RecipeError, match="section 'trainer' is unknown"):
        load_recipe(tmp_path / "unknown.yaml")
    with pytest.raises(RecipeError, match="'inner.steps' expects an integer"):
        load_recipe(tmp_path / "float.yaml")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


def test_parse_overrides_forms():
    assert parse_overrides(["--a.b", "1", "--c.d=x=y"]) == {"a.b": "1", "c.d": "x=y"}


def test_explain_documents_every_field():
    text = explain()
    for section in (
        "run",
        "model",
        "data",
        "inner",
        "outer",
        "compression",
        "validator",
        "chain",
        "tracking",
    ):
        assert f"{section}:" in text
    assert "steps: 24" in text and "Inner steps per round" in text
    # A docstring's line breaks and indentation in the source do not reach the wrapped comments.
    comments = [line.split("# ", 1)[1] for line in text.splitlines() if line.startswith("    # ")]
    assert comments and not any("  " in comment for comment in comments)
