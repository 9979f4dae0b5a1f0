_WATCHED_PASSED = ("success", "pass", "warn")
_WATCHED_FAILED = ("error", "fail", "runtime error")
_WATCHED_FINAL = _WATCHED_PASSED + _WATCHED_FAILED + ("skipped",)
_TASK_FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")


def _watch_folder(root, stage, context):
    """Where a watched stage's builds in this DAG run leave their events (build-1, build-2, ...),
    and the number of the build each of its tasks last took its state from (consumed/TASK).
    """
    from urllib.parse import quote

    ti = context["ti"]
    return os.path.join(root, quote(ti.dag_id, safe=""), quote(ti.run_id, safe=""), quote(stage, safe=""))


def _newest_build(folder):
    """The number of the newest build-N in folder; 0 before the first."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return max((int(n[6:]) for n in names if n.startswith("build-") and n[6:].isdigit()), default=0)


def _write_whole(path, text):
    """Write text to path by rename, so that a reader sees all of it or nothing."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def _dbt_event(line):
    """(unique_id, node_status, message) of one line of dbt's JSON log; a line that is not
    JSON is its own message.
    """
    import re

    try:
        event = json.loads(line)
    except ValueError:
        return None, None, line.rstrip("\n")
    if not isinstance(event, dict):
        return None, None, line.rstrip("\n")
    message = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str((event.get("info") or {}).get("msg", "")))
    node = (event.get("data") or {}).get("node_info") or {}
    return node.get("unique_id"), node.get("node_status"), message


def _run_dbt_lines(command, env, on_line):
    """Run a dbt command line with bash, dbt logging JSON, each output line to on_line; the
    process group is killed if the task is (a timeout, a kill), so no dbt outlives it.
    """
    import signal
    import subprocess

    environment = dict(os.environ, **(env or {}))
    environment["DBT_LOG_FORMAT"] = "json"
    process = subprocess.Popen(
        ["bash", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment,
        text=True,
        start_new_session=True,
    )
    try:
        for line in process.stdout:
            on_line(line)
        return process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _dbt_watched_build(command, env, root, stage, **context):
    """The one `dbt build` of a watched per-model stage. dbt's events go line by line to a new
    build-N/events.jsonl, which the stage's tasks read as they come, and build-N/exit is written
    last. A node that fails is its task's to report; this task fails only when dbt could not run
    the build (exit status 2, a signal), and then each task builds its own nodes.
    """
    log = logging.getLogger("airflow.task")
    folder = _watch_folder(root, stage, context)
    os.makedirs(folder, exist_ok=True)
    number = 1 + _newest_build(folder)
    while True:
        build = os.path.join(folder, f"build-{number}")
        try:
            os.mkdir(build)
            break
        except FileExistsError:
            number += 1
    log.info("fhirflow: watched dbt build %d of stage %s in %s", number, stage, build)
    with open(os.path.join(build, "events.jsonl"), "w", encoding="utf-8") as events:

        def take(line):
            events.write(line)
            events.flush()
            log.info("%s", _dbt_event(line)[2])

        status = _run_dbt_lines(command, env, take)
    _write_whole(os.path.join(build, "exit"), str(status))
    if status not in (0, 1):
        raise RuntimeError(f"dbt build exited {status}; the stage's tasks build their own nodes")
    log.info("fhirflow: dbt build exited %d; each task of the stage reports its own nodes", status)
    return {"build": number, "exit": status}


def _read_watched_build(build, nodes):
    """Each of nodes' latest status in a build, and their log lines."""
    states = {}
    lines = {}
    try:
        with open(os.path.join(build, "events.jsonl"), encoding="utf-8") as events:
            for line in events:
                unique_id, status, message = _dbt_event(line)
                if unique_id in nodes:
                    lines.setdefault(unique_id, []).append(message)
                    # Summaries after a node's result carry node_status "None".
                    if status in _WATCHED_FINAL:
                        states[unique_id] = status
    except FileNotFoundError:
        pass
    return states, lines


def _dbt_watched_node(build_task, nodes, command, env, root, stage, **context):
    """A poke of one task of a watched per-model stage. The first time, it takes its nodes'
    states from the stage's build as dbt reports them. A node that dbt skipped (something it
    depends on failed in that build, and has been fixed since) is built here; so is every node
    when the task runs again (a retry, a clear), or when dbt could not run the build. It waits
    while the build task has not finished and has no build this task has not yet read.
    """
    log = logging.getLogger("airflow.task")
    ti = context["ti"]
    folder = _watch_folder(root, stage, context)
    mark = os.path.join(folder, "consumed", ti.task_id)
    try:
        with open(mark, encoding="utf-8") as handle:
            seen = int(handle.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        seen = 0
    number = _newest_build(folder)
    build = os.path.join(folder, f"build-{number}")
    finished = _watched_task_finished(context, build_task)
    exit_path = os.path.join(build, "exit")
    if number > seen and (finished or not os.path.exists(exit_path)):
        states, lines = _read_watched_build(build, set(nodes))
        ended = finished or os.path.exists(exit_path)
        if not ended and not all(states.get(n) in _WATCHED_FINAL for n in nodes):
            return False
        os.makedirs(os.path.dirname(mark), exist_ok=True)
        _write_whole(mark, str(number))
        for unique_id in nodes:
            for line in lines.get(unique_id, []):
                log.info("%s", line)
        failed = [n for n in nodes if states.get(n) in _WATCHED_FAILED]
        if failed:
            raise RuntimeError(f"dbt build {number} of stage {stage}: {', '.join(failed)} failed")
        if all(states.get(n) in _WATCHED_PASSED for n in nodes):
            log.info("fhirflow: %s passed in dbt build %d", ", ".join(nodes), number)
            return True
        try:
            with open(exit_path, encoding="utf-8") as handle:
                built = handle.read().strip() in ("0", "1")
        except FileNotFoundError:
            built = False
        missing = [n for n in nodes if n not in states]
        if built and missing:
            raise RuntimeError(f"dbt build {number} of stage {stage} reported no result for {', '.join(missing)}")
        log.info("fhirflow: dbt build %d did not build %s; building here", number, ", ".join(nodes))
    elif not finished:
        return False
    else:
        log.info("fhirflow: building %s here (dbt build %d ran before this try)", ", ".join(nodes), number)
    states = {}

    def take(line):
        unique_id, status, message = _dbt_event(line)
        if unique_id in nodes and status in _WATCHED_FINAL:
            states[unique_id] = status
        log.info("%s", message)

    status = _run_dbt_lines(command, env, take)
    if status != 0:
        raise RuntimeError(f"dbt exited {status}")
    missing = [n for n in nodes if states.get(n) not in _WATCHED_PASSED]
    if missing:
        raise RuntimeError(f"dbt reported no result for {', '.join(missing)}")
    return True
