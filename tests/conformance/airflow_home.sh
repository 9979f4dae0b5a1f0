# Sourced by the airflow_dags_*.sh scripts: a throwaway AIRFLOW_HOME with a sqlite metadata DB,
# DAGS_DIR as the dags folder and examples off. Inherited AIRFLOW* variables are dropped, except
# AIRFLOW_CONN_*, by which a caller hands the DAGs a connection. Needs $venv, $dags_dir and
# optionally $extra_path (prepended to PATH); sets $AIRFLOW_HOME and $version (Airflow's).
while read -r var; do unset "$var"; done < <(compgen -e | grep '^AIRFLOW' | grep -v '^AIRFLOW_CONN_' || true)
AIRFLOW_HOME=$(mktemp -d -t fhirflow-airflow-home.XXXXXX)
trap 'rm -rf "$AIRFLOW_HOME"' EXIT
export AIRFLOW_HOME
export AIRFLOW__CORE__DAGS_FOLDER=$dags_dir
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
export PATH="${extra_path:+$extra_path:}$venv/bin:$PATH"
version=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')
if [[ $version == 2.* ]]; then
    # Opt in to the 3.x metrics unit, which silences 2.11's warning about it on every start.
    export AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY=True
fi
