"""Recipes → cells: the default matrix, TOML recipes, CLI overrides, and one-line recipe errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from condition.cli import main
from condition.compare.matrix import expand, lanes
from condition.compare.recipe import default_recipe, load_recipe, quicken, record_chain_label
from condition.errors import RecipeError

GOOD = """
frontends = ["tf", "torch"]
models = ["mlp", "cnn"]
datasets = ["fashion-mnist"]
targets = ["ethos-u85-128", {accelerator = "ethos-u55-128", system_config = "Ethos_U55_Deep_Embedded"}]
epochs = 2
seed = 7
eval_limit = 500

[[chains]]
steps = ["post-training-quant"]

[[chains]]
steps = [{technique = "prune", sparsity = 0.9, structure = "unstructured"}, {technique = "cluster", clusters = 8}, "qat"]

[[chains]]
name = "2:4 sparse"
steps = [{technique = "prune", structure = "2:4", sparsity = 0.5}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_default_matrix_is_the_issue_matrix_on_both_frontends(tmp_path):
    cells = expand(default_recipe(), tmp_path)
    labels = ["post-training-quant", "qat", "prune 95 %", "prune 2:4", "cluster 16", "prune 95 % → cluster 16 → qat"]
    assert [c.label for c in cells] == labels * 2
    assert [c.config.frontend for c in cells] == ["tf"] * 6 + ["torch"] * 6
    assert {c.config.target.npu for c in cells} == {"ethos-u85-128"}
    assert len({c.config.hash for c in cells}) == 12
    assert [len(lane) for lane in lanes(cells)] == [6, 6]  # one trained float model per frontend
    chain = cells[5].config.chain
    assert [s.name for s in chain] == ["prune", "cluster", "qat"]
    assert chain[0].sparsity == 0.95 and chain[1].preserve_sparsity is True


def test_quick_uses_small_subsets_and_one_epoch(tmp_path):
    quick = quicken(default_recipe())
    assert quick.train_limit and quick.train_limit <= 5000 and quick.eval_limit and quick.eval_limit <= 1000
    assert quick.epochs == 1
    full, small = expand(default_recipe(), tmp_path), expand(quick, tmp_path)
    assert {c.config.hash for c in full}.isdisjoint(c.config.hash for c in small)  # never mistaken for full runs


def test_compare_cell_has_the_same_hash_as_the_same_single_run(tmp_path):
    """A compare cell and `condition tf prune --sparsity 0.95` share a configuration (and folder)."""
    from condition.cli.commands.common import build_run_config

    opts = {"then": (), "sparsity": 0.95, "structure": "unstructured", "schedule": "constant", "clusters": 16,
            "centroid_init": "kmeans++", "preserve_sparsity": True, "fine_tune_epochs": None, "qat_epochs": 1,
            "calibration_images": 200, "target": "ethos-u85-128", "system_config": None, "memory_mode": None,
            "vela_config": None, "model": "mlp", "dataset": "fashion-mnist", "epochs": 1, "seed": 0, "out": str(tmp_path)}
    single = build_run_config("tf", "prune", opts)
    cell = next(c for c in expand(default_recipe(), tmp_path) if c.config.frontend == "tf" and c.label == "prune 95 %")
    assert cell.config.hash == single.hash
    assert cell.config.run_dir() == single.run_dir()


def test_recipe_file_expands_to_every_combination(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD))
    cells = expand(recipe, tmp_path / "out")
    assert len(cells) == 2 * 2 * 1 * 2 * 3  # frontends × models × data sets × targets × chains
    assert {c.label for c in cells} == {"post-training-quant", "prune 90 % → cluster 8 → qat", "2:4 sparse"}
    assert {c.config.target.system_config for c in cells} == {"Ethos_U85_SYS_DRAM_Mid", "Ethos_U55_Deep_Embedded"}
    assert {(c.config.epochs, c.config.seed, c.config.eval_limit, c.config.train_limit) for c in cells} == {(2, 7, 500, None)}
    assert len(lanes(cells)) == 4  # frontend × model share a float model across targets and chains
    assert all(str(c.config.run_dir()).startswith(str(tmp_path / "out")) for c in cells)


def test_chain_label_reads_record_fields():
    assert record_chain_label(["prune"], {"prune": {"sparsity": 0.5, "structure": "2:4"}}) == "prune 2:4"
    assert record_chain_label(["prune"], {"prune": {"sparsity": 0.75, "structure": "2:4"}}) == "prune 2:4 75 %"
    assert record_chain_label(["cluster", "post-training-quant"], {"cluster": {"clusters": 32}}) == "cluster 32 → post-training-quant"
    assert record_chain_label([], {}) == "float"


@pytest.mark.parametrize("text, key, words", [
    ("chains = [{steps = ['qat']}]\nmodle = ['mlp']", "modle", "unknown key"),
    ("[[chains]]\nsteps = ['distill']", "chains[0].steps[0].technique", "unknown technique"),
    ("[[chains]]\nsteps = [{technique = 'prune', sparsty = 0.9}]", "chains[0].steps[0].sparsty", "not an option of prune"),
    ("[[chains]]\nsteps = [{technique = 'prune', sparsity = 1.5}]", "chains[0]", "--sparsity"),
    ("[[chains]]\nsteps = [{technique = 'prune', structure = '3:4'}]", "chains[0]", "unknown value (choose unstructured or 2:4)"),
    ("[[chains]]\nsteps = ['qat', 'prune']", "chains[0]", "did you mean prune → qat"),
    ("[[chains]]\nsteps = []", "chains[0].steps", "float reference row is always shown"),
    ("[[chains]]\nsteps = ['qat']\n[[chains]]\nsteps = [{technique = 'qat'}]", "chains[1]", "same report row as chains[0]"),
    ("frontends = ['jax']\n[[chains]]\nsteps = ['qat']", "frontends[0]", "not a frontend"),
    ("targets = ['ethos-u99']\n[[chains]]\nsteps = ['qat']", "targets[0]", "unknown Ethos-U configuration"),
    ("targets = [{accelerator = 'ethos-u55-128', memory_mode = 'Dedicated_Sram'}]\n[[chains]]\nsteps = ['qat']", "targets[0]",
     "no dedicated SRAM"),
    ("epochs = -1\n[[chains]]\nsteps = ['qat']", "epochs", "at least 0"),
    ("eval_limit = 'all'\n[[chains]]\nsteps = ['qat']", "eval_limit", "must be an integer"),
    ("models = []\n[[chains]]\nsteps = ['qat']", "models", "non-empty list"),
    ("seed = 1", "chains", "missing"),
])
def test_recipe_errors_name_the_file_and_key(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"recipe {path}: {key}")
    assert words in message
    assert "\n" not in message


def test_unreadable_recipes(tmp_path):
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(RecipeError, match=r"not valid TOML \(.*line 2"):
        load_recipe(write(tmp_path, "seed = 1\nchains = ]\n"))


def test_cli_reports_a_bad_recipe_in_one_line(tmp_path, capsys):
    path = write(tmp_path, "[[chains]]\nsteps = ['distill']")
    assert main(["compare", "--recipe", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("condition: error: recipe ") and "distill" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_cli_options_override_the_recipe(tmp_path):
    import click

    from condition.cli.commands.compare import build_recipe, compare

    path = write(tmp_path, GOOD)
    ctx = compare.make_context("compare", ["--recipe", str(path), "--frontend", "torch", "--seed", "3", "--target", "ethos-u85-256"])
    with ctx:
        recipe = build_recipe(ctx, ctx.params)
    assert recipe.frontends == ("torch",) and recipe.seed == 3 and recipe.models == ("mlp", "cnn")
    assert [t.npu for t in recipe.targets] == ["ethos-u85-256"]
    assert recipe.epochs == 2  # not typed: the recipe's value stays
    assert isinstance(ctx, click.Context)


def test_shipped_default_recipe_is_the_built_in_matrix(tmp_path):
    shipped = expand(load_recipe(Path(__file__).parent.parent / "recipes" / "default.toml"), tmp_path)
    built_in = expand(default_recipe(), tmp_path)
    assert [(c.label, c.config.hash) for c in shipped] == [(c.label, c.config.hash) for c in built_in]
