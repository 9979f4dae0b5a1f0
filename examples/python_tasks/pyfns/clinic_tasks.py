"""The callables of examples/python_tasks: a hand-written four-DAG project's Python tasks.

Each returns a JSON value that the next task receives, through XCom in Airflow and as a JSON
value under `fhirflow run`; the checks raise when a value did not arrive intact.
"""


def generate_patients(count, seed):
    return [{"id": f"p{seed}-{i}", "age": 20 + (i * 7) % 60} for i in range(count)]


def summarize(patients):
    return {"patients": len(patients), "oldest": max(p["age"] for p in patients)}


def check_summary(summary, expected):
    if summary["patients"] != expected:
        raise ValueError(f"expected {expected} patients, got {summary}")
    return True


def list_batches(day, empty):
    return [] if empty else [f"bundles/{day}/batch-{n}.json" for n in range(3)]


def route(batches):
    """The branch: upload when there is something to upload, else note that there is nothing."""
    return "upload_batches" if batches else "nothing_to_upload"


def upload_batches(batches):
    return {"uploaded": len(batches), "keys": batches}


def read_manifest(tables):
    return {table: 10 * (n + 1) for n, table in enumerate(tables)}


def load_rows(manifest):
    return sum(manifest.values())


def check_rows(rows, manifest):
    if rows != sum(manifest.values()) or rows == 0:
        raise ValueError(f"loaded {rows} rows for {manifest}")
    return rows


def build_report(title, sections):
    return {"title": title, "lines": [f"{s}: ok" for s in sections]}
