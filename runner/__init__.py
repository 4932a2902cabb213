"""The papermill orchestration behind ``run_all.py`` (beside it, not part of the importable library), one job a module:

| module | job |
|---|---|
| ``profiles`` | the profiles as data (the smoke overrides) and which notebooks a run selects |
| ``parameters`` | ``-p NAME=VALUE`` values, the notebooks' declared parameters, each notebook's planned parameters |
| ``preflight`` | what is checked before any kernel starts: every planned value, the output folder, 09's members, the CPU |
| ``execute`` | one notebook through papermill (its own error fields), an interrupted copy marked, the run in order |
| ``results`` | ``results.md`` / ``results.csv`` and the seeds' summary, from the records (read through ``skinlib.outputs``) |
| ``grid`` | a sweep's axes, one folder per point, one task per notebook run (09 after its members), what is complete |
| ``sweep`` | the tasks on Dask distributed (local, ``--scheduler``, ``--cluster``), one GPU per kernel, retries |
| ``campaign`` | the sweep command: plan, check every task, run, write the results and the report |
| ``report`` | ``sweep.md`` / ``sweep.csv`` and the leak figure |

The dataset check and the download prompt are ``skinlib.download.prompt``.
"""

from runner.execute import (EXIT_STATUS, Outcome, RunError, Terminated, execute, format_interval,
                            mark_interrupted, quiet_kernels, run_notebooks, signal_name, stop_on_sigterm)
from runner.parameters import notebook_parameters, parse_overrides, parse_value, plan_parameters
from runner.preflight import check_members, check_out_dir, check_parameters, cpu_warning, lock
from runner.profiles import KERNEL, NOTEBOOKS_DIR, PROFILES, PROJECT, SMOKE, profile, profile_frame, select
from runner.results import RESULT_COLUMNS, collect, result_row, write_results, write_seed_summary

__all__ = ["EXIT_STATUS", "KERNEL", "NOTEBOOKS_DIR", "Outcome",
           "PROFILES", "PROJECT", "RESULT_COLUMNS", "RunError", "SMOKE",
           "check_members", "check_out_dir", "check_parameters", "lock", "collect", "cpu_warning", "execute", "format_interval",
           "mark_interrupted", "notebook_parameters", "parse_overrides", "parse_value", "plan_parameters", "profile",
           "profile_frame", "quiet_kernels", "result_row", "run_notebooks", "select", "signal_name", "stop_on_sigterm",
           "Terminated", "write_results", "write_seed_summary"]
