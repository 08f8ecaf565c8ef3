"""The fine-tuning variants behind the defaults of condition/fine_tuning.py (the README's "Fine-tuning" table):
one prune run with another rate, decay or distillation, U85-128, 12,000 training images, 2 float epochs, 5,000
test images; prints one JSON line (int8 accuracy measured). The float models are shared through one float cache.

    .venv/bin/python bench/fine_tune_variants.py MODEL FRONTEND VARIANT SPARSITY FT_EPOCHS [DATASET [SCHEDULE]]
    .venv/bin/python bench/fine_tune_variants.py ds-cnn tf old 0.9 3      # 1e-3 constant, no distillation
    .venv/bin/python bench/fine_tune_variants.py ds-cnn torch kd 0.9 1    # 5e-4 cosine + distillation
    (sparsity 0: the dense int8 baseline)
"""
import functools, json, os, sys
from pathlib import Path
import condition.pipeline as pipeline
from condition.fine_tuning import FineTune
from condition.run import RunConfig, run_config
from condition.backend.target import Target
from condition.techniques import make_config

model, fw, variant, sparsity, epochs_ft = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
dataset = sys.argv[6] if len(sys.argv) > 6 else "fashion-mnist"
schedule = sys.argv[7] if len(sys.argv) > 7 else "constant"
V = {"old": dict(peak_learning_rate=1e-3, final_fraction=1.0, distill=False),
     "cos": dict(peak_learning_rate=5e-4, final_fraction=0.05, distill=False),
     "kd": dict(peak_learning_rate=5e-4, final_fraction=0.05, distill=True),
     "kd1e3": dict(peak_learning_rate=1e-3, final_fraction=0.05, distill=True),
     "kd2e4": dict(peak_learning_rate=2e-4, final_fraction=0.05, distill=True),
     "kd2e3": dict(peak_learning_rate=2e-3, final_fraction=0.05, distill=True),
     "cos1e3": dict(peak_learning_rate=1e-3, final_fraction=0.05, distill=False),
     "kdconst": dict(peak_learning_rate=1e-3, final_fraction=1.0, distill=True)}[variant]
root = Path(os.environ.get("OUT", "bench/runs/fine-tune-variants"))
out = root / f"{variant}-{schedule}"
for f in ("tf", "torch"):
    (out / f).mkdir(parents=True, exist_ok=True)
    (root / "shared" / f / ".float-cache").mkdir(parents=True, exist_ok=True)
    link = out / f / ".float-cache"
    if not link.exists():
        link.symlink_to(root / "shared" / f / ".float-cache")
distill = V.pop("distill")
pipeline.FineTune = lambda distill: FineTune(distill=distill, **V)
chain = (make_config("prune", {"sparsity": sparsity, "fine_tune_epochs": epochs_ft, "schedule": schedule}),) if sparsity > 0 else (make_config("post-training-quant", {}),)
cfg = RunConfig(fw, chain, target=Target.default_for("ethos-u85-128"), model=model, dataset=dataset, epochs=2, out=out,
                train_limit=12000, eval_limit=5000, distill=distill)
r = run_config(cfg)
acc = {a.kind: a.value for a in r.accuracy}
print(json.dumps({"model": model, "dataset": dataset, "fw": fw, "variant": variant, "sparsity": sparsity, "ft_epochs": epochs_ft, "schedule": schedule,
                  "float": acc.get("float"), "int8": acc.get("int8"), "seconds": r.step_seconds.get("total")}))
