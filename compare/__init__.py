"""`condition compare`: run a matrix of techniques on both frontends and report them side by side.

recipe.py (what to run) → matrix.py (cells) → runner.py + worker.py (run them on Ray, resume,
failures; cluster.py starts or joins Ray, ray_auth.py finds Ray's token for a cluster, transfer.py carries
run folders back; out_lock.py keeps one command per OUT) → records.py (which
records form a comparison) → table.py (figures and ratios) → layout.py, plots.py → report_md.py,
report_html.py, report_csv_json.py (results.csv, results.json), report_text.py; report.py writes them.
`condition search`: search_space.py (chains as Optuna parameters, trial and baseline runs) →
search.py (Ray Tune + Optuna, constraint, early stop, ledger) → search_report.py (Pareto fronts).
No module here imports tensorflow or torch: the frontends are reached through condition.run.
"""
