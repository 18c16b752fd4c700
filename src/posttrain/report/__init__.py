"""A table and plots of a sweep, like the DPO guide's "compare datasets" and "scaling analysis":

    python -m posttrain.report multirun/<date>/<time>      (or dir=..., or a single outputs/<run>)

writes into DIR (or out=...):
    report.md, report.csv   one row per job: the overrides that differ between jobs, the job's state
                            (completed / failed / running / interrupted / pending; failed rows carry the
                            one-line error) and its final metrics from results.json
    plots/<metric>_vs_<knob>.png   each final metric against each swept numeric knob, one line per
                            combination of the other swept knobs
    plots/learning_curves.png      every job's loss (and eval loss) against the step, a column per stage

It reads only what the jobs left on disk (through posttrain.rundir), so it works on a sweep that is still
running or partly failed.

    reading.py   run directories -> one Job row each; which keys vary between jobs
    tables.py    the Markdown and CSV table
    plots.py     metric-vs-knob plots and learning curves (matplotlib)
    write.py     write_report: the three together, into report.md, report.csv and plots/
    __main__.py  the command line
"""
