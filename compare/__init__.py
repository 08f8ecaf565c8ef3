"""`condition compare`: run a matrix of techniques on both frontends and report them side by side.

recipe.py (what to run) → matrix.py (cells) → runner.py + worker.py (run them, resume, failures)
→ records.py (which records form a comparison) → table.py (figures and ratios) → layout.py,
plots.py → report_md.py, report_html.py, export.py (csv/json), report_text.py; report.py writes them.
No module here imports tensorflow or torch: the frontends are reached through condition.run.
"""
