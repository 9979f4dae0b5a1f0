"""Time Airflow's DagBag parse of fhirflow's, the hand-written static and the Cosmos DAG file.

Why this exists: it is the measuring half of bench/cosmos/run.sh. Run it with the python of the
cosmos venv (Airflow 3.3.2 + Cosmos):

    python measure.py --runs 7 --out RESULTS_DIR BENCH_DIR [BENCH_DIR ...]
    python measure.py --report RESULTS_DIR/results.json     # print the tables again

Each BENCH_DIR (made by run.sh for one N) holds dags/bench_dbt.py (fhirflow),
dags_static/bench_dbt_static.py and dags_cosmos/bench_dbt_cosmos.py. Writes
RESULTS_DIR/results.json (every sample and the summaries) and RESULTS_DIR/results_table.md.

What one sample is. Every sample runs in a new process that has imported nothing of any DAG
file. This process (the parent) first isolates Airflow (a throwaway AIRFLOW_HOME, every inherited
AIRFLOW_* variable removed, examples off, Cosmos telemetry off), then imports `airflow`,
`DagBag`, `iter_airflow_imports` and `DagSerialization`; then, per sample, it forks a child, as
Airflow 3's dag-processor forks one child per file it parses. The child
  * `cold` mode: times `DagBag(dag_folder=FILE)` and nothing else (Airflow 3.3's DagBag has no
    `include_examples`: examples are off through AIRFLOW__CORE__LOAD_EXAMPLES). The
    timed region therefore covers reading and compiling the file, importing whatever it imports
    that is not yet imported (airflow.providers.standard's BashOperator; all of cosmos),
    executing it (building the DAG; for Cosmos, reading manifest.json and rendering it), and
    DagBag's own checks (cycle check, DAG validation).
  * `processor` mode: first imports the `airflow.*` modules the file names, as the dag-processor
    does before forking (`[dag_processor] parsing_pre_import_modules`, on by default; it finds
    `airflow.*` imports only, so `cosmos` is still imported inside the timed region), with
    Airflow's own objects moved out of the garbage collector's reach by `gc.freeze()` as the
    dag-processor's manager does before it forks (`cold` samples `gc.unfreeze()` first), then times
    the same DagBag call, and then, separately, `DagSerialization.to_dict` of the DAG, which the
    dag-processor does next to every parsed DAG before sending it to the database.
The child also counts the DAG's tasks, task groups and edges and reports import errors; a
sample with an import error aborts the run.
`--isolation exec` replaces the fork by a fresh `python` process per sample that imports Airflow
itself (slower: Airflow's import takes seconds here; the timed region is the same).

Samples are interleaved: for each N, for each run, the three files in an order rotated every run,
each in both modes; so machine load drifts hit all three alike. Summaries are median, min, max.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import version as dist_version
from pathlib import Path

FILES = {  # label -> path inside a BENCH_DIR
    "fhirflow": "dags/bench_dbt.py",
    "static": "dags_static/bench_dbt_static.py",
    "cosmos": "dags_cosmos/bench_dbt_cosmos.py",
}
MODES = ("cold", "processor")


def isolate_airflow() -> None:
    """A throwaway Airflow home before Airflow is first imported (as tests/conformance/airflow_check.py)."""
    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        del os.environ[key]
    home = tempfile.mkdtemp(prefix="fhirflow-bench-airflow-")
    os.environ.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
        DO_NOT_TRACK="1",
    )


def import_airflow() -> None:
    global DagBag, DagSerialization, iter_airflow_imports
    import airflow  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.file import iter_airflow_imports


def sample(path: str, mode: str) -> dict:
    """One measurement, in a process that has parsed no DAG file yet (and has called gc.freeze())."""
    import gc
    import importlib

    if mode == "cold":
        gc.unfreeze()  # as in a plain `python -c`, Airflow's objects are back under the collector
    if mode == "processor":
        for module in iter_airflow_imports(path):
            importlib.import_module(module)
    start = time.perf_counter()
    bag = DagBag(dag_folder=path)
    parse_s = time.perf_counter() - start
    result = {"parse_s": parse_s, "import_errors": {k: v[-2000:] for k, v in bag.import_errors.items()}}
    if mode == "processor":
        start = time.perf_counter()
        for dag in bag.dags.values():
            DagSerialization.to_dict(dag)
        result["serialize_s"] = time.perf_counter() - start
    result["dags"] = len(bag.dags)
    result["tasks"] = sum(len(d.tasks) for d in bag.dags.values())
    result["edges"] = sum(len(t.upstream_task_ids) for d in bag.dags.values() for t in d.tasks)
    result["task_groups"] = sum(len(d.task_group.get_task_group_dict()) - 1 for d in bag.dags.values())
    return result


def forked_sample(path: str, mode: str, log) -> dict:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            payload = sample(path, mode)
        except BaseException:  # noqa: BLE001 - report anything, the child exits right after
            payload = {"error": traceback.format_exc()}
        os.write(write_end, json.dumps(payload).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return {"error": f"child exited with status {status} and no result"}
    return json.loads(b"".join(chunks))


def exec_sample(path: str, mode: str, log) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-P", __file__, "--child", mode, path, out.name],
            stdout=log, stderr=log, check=False,
        )
        text = Path(out.name).read_text()
    return json.loads(text) if text else {"error": "child wrote no result"}


def summarize(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def versions() -> dict:
    found = {d: dist_version(d) for d in ("apache-airflow", "apache-airflow-providers-standard", "astronomer-cosmos")}
    for key, name in (("BENCH_FHIRFLOW", "fhirflow"), ("BENCH_DBT", "dbt")):  # set by run.sh
        if os.environ.get(key):
            found[name] = os.environ[key]
    return found


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }


def fmt(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"


def table(summary: dict, mode: str) -> str:
    head = (
        "| models | tasks (fhirflow / static / Cosmos) | fhirflow | hand-written static | Cosmos "
        "| fhirflow ÷ static | Cosmos ÷ fhirflow |\n"
        "|---:|---|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for n, files in sorted(summary.items(), key=lambda kv: int(kv[0])):
        cell = lambda f: (  # noqa: E731
            f"{fmt(files[f][mode]['parse_s']['median'])} "
            f"({fmt(files[f][mode]['parse_s']['min'])}–{fmt(files[f][mode]['parse_s']['max'])})"
        )
        med = {f: files[f][mode]["parse_s"]["median"] for f in FILES}
        tasks = " / ".join(str(files[f]["tasks"]) for f in FILES)
        rows.append(
            f"| {int(n):,} | {tasks} | {cell('fhirflow')} | {cell('static')} | {cell('cosmos')} "
            f"| {med['fhirflow'] / med['static']:.3f}× | {med['cosmos'] / med['fhirflow']:.1f}× |"
        )
    return head + "\n".join(rows) + "\n"


def total_table(summary: dict) -> str:
    head = (
        "| models | fhirflow | hand-written static | Cosmos | fhirflow ÷ static | Cosmos ÷ fhirflow |\n"
        "|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for n, files in sorted(summary.items(), key=lambda kv: int(kv[0])):
        ser = {f: files[f]["processor"]["serialize_s"]["median"] for f in FILES}
        tot = {f: files[f]["processor"]["total_s"]["median"] for f in FILES}
        cells = " | ".join(f"{fmt(ser[f])} / {fmt(tot[f])}" for f in FILES)
        rows.append(
            f"| {int(n):,} | {cells} | {tot['fhirflow'] / tot['static']:.3f}× | {tot['cosmos'] / tot['fhirflow']:.1f}× |"
        )
    return head + "\n".join(rows) + "\n"


def summarize_samples(samples: list[dict]) -> dict:
    """{N: {file: counts, and per mode the parse (and serialize, total) summaries}}."""
    summary: dict = {}
    for n in sorted({s["models"] for s in samples}):
        per_file = {}
        for label in FILES:
            mine = [s for s in samples if s["models"] == n and s["file"] == label]
            per_file[label] = {k: mine[0][k] for k in ("tasks", "edges", "task_groups", "dags")}
            for mode in MODES:
                these = [s for s in mine if s["mode"] == mode]
                per_file[label][mode] = {"parse_s": summarize([s["parse_s"] for s in these])}
                if mode == "processor":
                    per_file[label][mode]["serialize_s"] = summarize([s["serialize_s"] for s in these])
                    per_file[label][mode]["total_s"] = summarize([s["parse_s"] + s["serialize_s"] for s in these])
        summary[str(n)] = per_file
    return summary


def report(results: dict) -> str:
    summary, runs = results["summary"], results["runs"]
    return (
        f"DagBag parse time, median (min–max) of {runs} runs, `cold` (only `airflow` imported before the timer):\n\n"
        + table(summary, "cold")
        + f"\nDagBag parse time, median (min–max) of {runs} runs, `processor` (the file's `airflow.*` "
        "imports done before the timer, as the dag-processor does):\n\n"
        + table(summary, "processor")
        + "\nWhat the dag-processor does per parse (`processor` mode): DAG serialization after the parse / "
        "parse + serialization, medians:\n\n"
        + total_table(summary)
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":  # exec isolation: one sample, then exit
        _, _, mode, path, out = sys.argv
        isolate_airflow()
        import_airflow()
        gc.freeze()
        try:
            payload = sample(path, mode)
        except BaseException:  # noqa: BLE001
            payload = {"error": traceback.format_exc()}
        Path(out).write_text(json.dumps(payload))
        return

    if len(sys.argv) == 3 and sys.argv[1] == "--report":  # re-render the tables of a results.json
        results = json.loads(Path(sys.argv[2]).read_text())
        results["summary"] = summarize_samples(results["samples"])
        print(report(results))
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--isolation", choices=("fork", "exec"), default="fork")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("bench_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    isolate_airflow()
    started = datetime.now(timezone.utc)
    info = {"started": started.isoformat(timespec="seconds"), "machine": machine(), "isolation": args.isolation}
    t0 = time.perf_counter()
    import_airflow()
    info["parent_airflow_import_s"] = time.perf_counter() - t0
    gc.freeze()  # as the dag-processor does before it forks parsers; `cold` samples undo it
    info["versions"] = versions()

    args.out.mkdir(parents=True, exist_ok=True)
    take = forked_sample if args.isolation == "fork" else exec_sample
    samples = []
    with open(args.out / "measure.log", "w") as log:
        for bench in args.bench_dirs:
            n = json.loads((bench / "bench.json").read_text())["models"]
            paths = {label: str((bench / rel).resolve()) for label, rel in FILES.items()}
            labels = list(FILES)
            for run in range(args.runs):
                order = labels[run % len(labels):] + labels[: run % len(labels)]
                for label in order:
                    for mode in MODES:
                        log.write(f"--- N={n} run={run} {label} {mode}\n")
                        log.flush()
                        result = take(paths[label], mode, log)
                        if result.get("error") or result.get("import_errors") or not result.get("dags"):
                            sys.exit(f"measure: {label} at N={n} failed to load:\n{json.dumps(result, indent=2)}")
                        result.update(models=n, file=label, mode=mode, run=run)
                        samples.append(result)
                        extra = f", serialize {fmt(result['serialize_s'])}" if "serialize_s" in result else ""
                        print(
                            f"measure: N={n:<5} run {run + 1}/{args.runs} {label:<8} {mode:<9} "
                            f"DagBag {fmt(result['parse_s'])}{extra} ({result['tasks']} tasks)",
                            file=sys.stderr,
                        )
    info["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["runs"] = args.runs
    results = {**info, "summary": summarize_samples(samples), "samples": samples}
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = report(results)
    (args.out / "results_table.md").write_text(md)
    print(md)

if __name__ == "__main__":
    main()
