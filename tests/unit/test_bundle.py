"""The Databricks bundle and conf/databricks.yaml, checked offline (no workspace, no Spark).

The bundle YAML is merged per target the way ``databricks bundle`` does it (includes and
target overrides on top of the root config; sequences concatenated, then tasks, job clusters
and job parameters merged by their key; ``${var.*}`` and ``${workspace.*}`` interpolated),
then every task's command line, with the job parameters substituted, is parsed by
Lakechain's own CLI parser and turned into validated settings. Both variants are checked:
the job-cluster job and the serverless one (Spark Connect, an ``environments`` spec that
installs the wheel).
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import functools
import json
import logging
import re
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakechain.cli import build_parser, settings_from_args
from lakechain.config import ConfigError, Settings, databricks_secret, load_settings
from lakechain.storage.tables import Tables

REPO = Path(__file__).resolve().parents[2]
BUNDLE_FILE = REPO / "databricks.yml"
CONF = REPO / "conf" / "databricks.yaml"
CLUSTER_JOB = "lakechain_pipeline"
SERVERLESS_JOB = "lakechain_pipeline_serverless"
JOBS = (CLUSTER_JOB, SERVERLESS_JOB)
TARGETS = ("dev", "prod")
TASK_COMMANDS = {"embed": "embed", "index": "index", "run_tasks": "run-tasks"}
FAKE_USER = "someone@example.com"
SECRET = "azure-key-Zq81-never-print-me"

# Sequences the bundle CLI merges by key after concatenating them (its MergeJobTasks,
# MergeJobClusters and MergeJobParameters mutators); every other sequence is concatenated.
_LIST_KEYS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "parameters": "name"}
_BUNDLE_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
_JOB_PARAM = re.compile(r"\{\{job\.parameters\.([A-Za-z_][A-Za-z0-9_]*)\}\}")

# What only classic compute understands: serverless tasks take their libraries from an
# environment, and serverless has no cluster spec, Spark properties or environment variables.
CLUSTER_ONLY_JOB_KEYS = frozenset({"job_clusters"})
CLUSTER_ONLY_TASK_KEYS = frozenset({"job_cluster_key", "existing_cluster_id", "new_cluster", "libraries"})
CLUSTER_ONLY_ANYWHERE = frozenset({"spark_conf", "spark_env_vars", "init_scripts", "spark_version"})
# Packages a serverless environment (and a Databricks runtime) already provides: a wheel that
# required them would replace the runtime's own Spark or Spark Connect client.
RUNTIME_PACKAGES = re.compile(r"^(pyspark|delta-spark|databricks-connect)\b", re.IGNORECASE)


# --- a small model of `databricks bundle` config loading --------------------------------


def deep_merge(base: Any, override: Any, key: str | None = None) -> Any:
    """``override`` on top of ``base``: mappings recursively, keyed lists item by item, other
    lists concatenated (as the CLI's merge does), scalars replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = deep_merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list):
        out = [copy.deepcopy(x) for x in base]
        item_key = _LIST_KEYS.get(key or "")
        if not item_key:
            return out + copy.deepcopy(override)
        index = {x.get(item_key): i for i, x in enumerate(out)}
        for item in override:
            if item.get(item_key) in index:
                i = index[item[item_key]]
                out[i] = deep_merge(out[i], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(override)


def load_bundle() -> tuple[dict[str, Any], dict[str, Path]]:
    """Root config with its includes merged in, and the directory each job was defined in
    (relative paths in a resource file are relative to that file)."""
    root = yaml.safe_load(BUNDLE_FILE.read_text(encoding="utf-8"))
    job_dirs: dict[str, Path] = {name: REPO for name in root.get("resources", {}).get("jobs", {})}
    for pattern in root.get("include", []):
        for path in sorted(REPO.glob(pattern)):
            part = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for name in part.get("resources", {}).get("jobs", {}):
                assert name not in job_dirs, f"job {name} defined twice"
                job_dirs[name] = path.parent
            root = deep_merge(root, part)
    return root, job_dirs


def interpolate(node: Any, context: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: interpolate(v, context) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, context) for v in node]
    if isinstance(node, str):
        for _ in range(5):  # references may resolve to strings holding references
            if not _BUNDLE_REF.search(node):
                break
            node = _BUNDLE_REF.sub(lambda m: _lookup(m.group(1), context), node)
        return node
    return node


def _lookup(name: str, context: dict[str, str]) -> str:
    if name not in context:
        raise KeyError(f"unresolved bundle reference ${{{name}}}")
    return context[name]


def resolve_target(target: str) -> dict[str, Any]:
    """The effective bundle config of ``target``, fully interpolated (a copy: tests may edit it)."""
    return copy.deepcopy(_resolve_target(target))


@functools.cache
def _resolve_target(target: str) -> dict[str, Any]:
    root, _ = load_bundle()
    overrides = copy.deepcopy(root["targets"][target])
    target_vars = overrides.pop("variables", {}) or {}
    config = {k: v for k, v in root.items() if k != "targets"}
    config = deep_merge(
        config, {k: v for k, v in overrides.items() if k in ("resources", "workspace", "presets")}
    )
    config["mode"] = overrides.get("mode")
    variables = {}
    for name, spec in root.get("variables", {}).items():
        value = target_vars.get(name, spec.get("default"))
        if isinstance(value, dict):  # `name: {default: x}` form
            value = value.get("default")
        assert value is not None, f"variable {name} has no value in target {target}"
        variables[name] = str(value)
    unknown = set(target_vars) - set(variables)
    assert not unknown, f"target {target} sets undeclared variables {unknown}"
    context = {f"var.{k}": v for k, v in variables.items()}
    context |= {
        "bundle.name": root["bundle"]["name"],
        "bundle.target": target,
        "workspace.current_user.userName": FAKE_USER,
    }
    root_path = config.get("workspace", {}).get(
        "root_path", f"/Workspace/Users/{FAKE_USER}/.bundle/{root['bundle']['name']}/{target}"
    )
    context["workspace.root_path"] = interpolate(root_path, context)
    context["workspace.file_path"] = context["workspace.root_path"] + "/files"
    resolved = interpolate(config, context)
    resolved["_variables"] = variables
    resolved["_file_path"] = context["workspace.file_path"]
    return resolved


def job_parameters(job: dict[str, Any], **run_params: str) -> dict[str, str]:
    values = {p["name"]: str(p["default"]) for p in job.get("parameters", [])}
    unknown = set(run_params) - set(values)
    assert not unknown, f"not job parameters: {unknown}"
    return values | run_params


def task_argv(task: dict[str, Any], params: dict[str, str]) -> list[str]:
    """The task's command line after Databricks substitutes ``{{job.parameters.*}}``."""

    def sub(m: re.Match[str]) -> str:
        assert m.group(1) in params, f"task {task['task_key']} uses undeclared job parameter {m.group(1)}"
        return params[m.group(1)]

    return [_JOB_PARAM.sub(sub, str(a)) for a in task["spark_python_task"].get("parameters", [])]


def entry_command(path: Path) -> str:
    """The ``COMMAND`` constant of a jobs/*.py entry point, read without running it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMMAND" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} defines no COMMAND")


def local_config_path(workspace_path: str, file_path: str) -> Path:
    """A path under the bundle's synced files → the same file in this checkout."""
    assert workspace_path.startswith(file_path + "/"), workspace_path
    return REPO / workspace_path[len(file_path) + 1 :]


def fake_secrets(calls: list[tuple[str, str]] | None = None):
    def getter(scope: str, key: str) -> str:
        if calls is not None:
            calls.append((scope, key))
        if (scope, key) != ("lakechain", "azure-openai-key"):
            raise ConfigError(f"no secret {scope}/{key}")
        return SECRET

    return getter


def settings_for_task(
    target: str, task_key: str, job_name: str = CLUSTER_JOB, **run_params: str
) -> tuple[Any, Settings]:
    bundle = resolve_target(target)
    job = bundle["resources"]["jobs"][job_name]
    task = next(t for t in job["tasks"] if t["task_key"] == task_key)
    argv = task_argv(task, job_parameters(job, **run_params))
    args = build_parser().parse_args([TASK_COMMANDS[task_key], *argv])
    conf = local_config_path(args.config, bundle["_file_path"])
    return args, load_settings(conf, args.overrides, secret_getter=fake_secrets())


def _setup_kwargs() -> dict[str, Any]:
    """The literal keyword arguments of setup.py's ``setup(...)`` call, read without running it."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    constants = {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            out = {}
            for kw in node.keywords:
                value = constants.get(kw.value.id, kw.value) if isinstance(kw.value, ast.Name) else kw.value
                try:
                    out[kw.arg] = ast.literal_eval(value)
                except ValueError:
                    continue  # computed at build time (long_description, find_packages)
            return out
    raise AssertionError("setup.py calls no setup()")


def built_wheel_dir(bundle: dict[str, Any]) -> Path:
    """Where the wheel artifact's build command writes the wheel (``--wheel-dir``/``-w``)."""
    (artifact,) = bundle["artifacts"].values()
    argv = shlex.split(artifact["build"])
    for flag in ("--wheel-dir", "-w"):
        if flag in argv:
            return ((REPO / artifact.get("path", ".")) / argv[argv.index(flag) + 1]).resolve()
    raise AssertionError(f"the wheel build names no output directory: {artifact['build']}")


def built_wheel_name() -> str:
    """The file name `pip wheel` gives the project (pure Python, any platform)."""
    kw = _setup_kwargs()
    return f"{kw['name'].replace('-', '_')}-{kw['version']}-py3-none-any.whl"


def assert_is_the_built_wheel(pattern: str, job_dir: Path, bundle: dict[str, Any]) -> None:
    """A wheel reference (relative to the job's file) that matches the artifact's output."""
    path = job_dir / pattern
    assert path.parent.resolve() == built_wheel_dir(bundle), pattern
    assert path.name.endswith(".whl") and fnmatch.fnmatch(built_wheel_name(), path.name), pattern


def cluster_only_fields(job: dict[str, Any]) -> list[str]:
    """Every place in ``job`` that serverless compute does not accept, as a key path."""
    found = [k for k in CLUSTER_ONLY_JOB_KEYS if k in job]
    for task in job.get("tasks", []):
        found += [f"tasks.{task['task_key']}.{k}" for k in CLUSTER_ONLY_TASK_KEYS if k in task]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in CLUSTER_ONLY_ANYWHERE:
                    found.append(f"{path}{k}")
                walk(v, f"{path}{k}.")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}{i}.")

    walk(job, "")
    return sorted(set(found))


# --- the merge helper itself ------------------------------------------------------------


def test_deep_merge_merges_keyed_lists_and_concatenates_others() -> None:
    base = {"tasks": [{"task_key": "a", "x": 1, "c": {"n": 1, "m": 2}}], "name": "j", "tags": ["p"]}
    over = {"tasks": [{"task_key": "a", "c": {"n": 5}}, {"task_key": "b"}], "tags": ["q"], "name": "k"}
    merged = deep_merge(base, over)
    assert merged == {
        "tasks": [{"task_key": "a", "x": 1, "c": {"n": 5, "m": 2}}, {"task_key": "b"}],
        "name": "k",
        "tags": ["p", "q"],
    }
    assert base["tasks"][0]["c"] == {"n": 1, "m": 2}  # inputs untouched


def test_interpolation_fails_on_unknown_reference() -> None:
    with pytest.raises(KeyError, match="var.nope"):
        interpolate({"a": ["${var.nope}"]}, {"var.yes": "1"})


def test_cluster_only_fields_are_found_wherever_they_are() -> None:
    job = {
        "job_clusters": [{"job_cluster_key": "c", "new_cluster": {"spark_conf": {"a": "1"}}}],
        "tasks": [{"task_key": "t", "job_cluster_key": "c", "libraries": [{"whl": "x.whl"}]}],
    }
    assert cluster_only_fields(job) == [
        "job_clusters",
        "job_clusters.0.new_cluster.spark_conf",
        "tasks.t.job_cluster_key",
        "tasks.t.libraries",
    ]
    assert cluster_only_fields({"tasks": [{"task_key": "t", "environment_key": "e"}]}) == []


# --- bundle structure -------------------------------------------------------------------


def test_bundle_layout_and_wheel_artifact() -> None:
    root, job_dirs = load_bundle()
    assert root["bundle"]["name"] == "lakechain"
    assert "resources/*.yml" in root["include"]
    assert {job: job_dirs[job] for job in JOBS} == {job: REPO / "resources" for job in JOBS}

    artifacts = root["artifacts"]
    assert len(artifacts) == 1
    (wheel,) = artifacts.values()
    assert wheel["type"] == "whl"
    project = (REPO / wheel.get("path", ".")).resolve()
    assert (project / "setup.py").is_file()
    assert "wheel" in wheel["build"]
    assert built_wheel_dir(root) == project / "dist"

    assert root["targets"]["dev"]["mode"] == "development"
    assert root["targets"]["dev"]["default"] is True
    assert root["targets"]["prod"]["mode"] == "production"
    assert not root["targets"]["prod"].get("default", False)
    for name, spec in root["variables"].items():
        assert spec.get("description"), name


def test_the_wheel_never_brings_its_own_spark() -> None:
    """The runtime (job cluster) and the serverless environment provide Spark or its Connect
    client; a wheel requiring pyspark would replace it on install."""
    requires = _setup_kwargs()["install_requires"]
    assert requires, "setup.py lists its install_requires literally"
    assert [r for r in requires if RUNTIME_PACKAGES.match(r)] == []


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("job_name", JOBS)
def test_tasks_run_entry_points_in_order(target: str, job_name: str) -> None:
    bundle = resolve_target(target)
    _, job_dirs = load_bundle()
    job = bundle["resources"]["jobs"][job_name]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert list(tasks) == list(TASK_COMMANDS)

    deps = {k: [d["task_key"] for d in t.get("depends_on", [])] for k, t in tasks.items()}
    assert deps == {"embed": [], "index": ["embed"], "run_tasks": ["index"]}
    assert job["max_concurrent_runs"] == 1

    for key, task in tasks.items():
        entry = (job_dirs[job_name] / task["spark_python_task"]["python_file"]).resolve()
        assert entry.is_file(), entry
        assert entry.parent == REPO / "jobs"
        assert entry_command(entry) == TASK_COMMANDS[key]


@pytest.mark.parametrize("target", TARGETS)
def test_cluster_tasks_install_the_built_wheel_on_the_job_cluster(target: str) -> None:
    bundle = resolve_target(target)
    _, job_dirs = load_bundle()
    job = bundle["resources"]["jobs"][CLUSTER_JOB]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    for task in job["tasks"]:
        assert task["job_cluster_key"] in clusters
        assert "environment_key" not in task
        wheels = [lib["whl"] for lib in task.get("libraries", []) if "whl" in lib]
        assert len(wheels) == 1, f"{task['task_key']}: exactly one wheel library"
        assert_is_the_built_wheel(wheels[0], job_dirs[CLUSTER_JOB], bundle)


@pytest.mark.parametrize("target", TARGETS)
def test_serverless_tasks_name_an_environment_that_installs_the_built_wheel(target: str) -> None:
    bundle = resolve_target(target)
    _, job_dirs = load_bundle()
    job = bundle["resources"]["jobs"][SERVERLESS_JOB]
    envs = [e["environment_key"] for e in job["environments"]]
    assert len(envs) == len(set(envs)), f"duplicate environment keys {envs}"
    specs = {e["environment_key"]: e["spec"] for e in job["environments"]}
    assert [t["task_key"] for t in job["tasks"] if not t.get("environment_key")] == []
    used = {t["environment_key"] for t in job["tasks"]}
    assert used <= set(specs), f"tasks name undefined environments {used - set(specs)}"
    assert used == set(specs), f"environments no task uses: {set(specs) - used}"

    for key in used:
        spec = specs[key]
        # `client` is the deprecated spelling; the schema asks for environment_version.
        assert "client" not in spec
        assert re.fullmatch(r"[1-9][0-9]*", spec["environment_version"]), spec
        assert spec["environment_version"] == bundle["_variables"]["serverless_environment_version"]
        wheels = [d for d in spec["dependencies"] if d.endswith(".whl")]
        assert len(wheels) == 1, f"{key}: exactly one wheel dependency"
        assert_is_the_built_wheel(wheels[0], job_dirs[SERVERLESS_JOB], bundle)
        assert [d for d in spec["dependencies"] if RUNTIME_PACKAGES.match(d)] == []


@pytest.mark.parametrize("target", TARGETS)
def test_serverless_job_sets_no_cluster_only_fields(target: str) -> None:
    job = resolve_target(target)["resources"]["jobs"][SERVERLESS_JOB]
    assert cluster_only_fields(job) == []
    # The cluster job really uses them, so the check above is not vacuous.
    cluster_job = resolve_target(target)["resources"]["jobs"][CLUSTER_JOB]
    assert "job_clusters" in cluster_only_fields(cluster_job)


@pytest.mark.parametrize("target", TARGETS)
def test_both_variants_run_the_same_command_lines(target: str) -> None:
    jobs = resolve_target(target)["resources"]["jobs"]
    cluster, serverless = jobs[CLUSTER_JOB], jobs[SERVERLESS_JOB]
    assert job_parameters(serverless) == job_parameters(cluster)
    for c_task, s_task in zip(cluster["tasks"], serverless["tasks"], strict=True):
        assert c_task["task_key"] == s_task["task_key"]
        assert c_task["spark_python_task"] == s_task["spark_python_task"]
        assert c_task.get("depends_on") == s_task.get("depends_on")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("job_name", JOBS)
def test_every_reference_resolves(target: str, job_name: str) -> None:
    bundle = resolve_target(target)
    job = bundle["resources"]["jobs"][job_name]
    leftovers = re.findall(r"\$\{[^}]*\}", json.dumps(job))
    assert leftovers == []
    declared = {p["name"] for p in job["parameters"]}
    used = {
        m for t in job["tasks"] for a in t["spark_python_task"]["parameters"] for m in _JOB_PARAM.findall(a)
    }
    assert used == declared  # no undeclared parameter, none declared for nothing


@pytest.mark.parametrize("target", TARGETS)
def test_job_cluster_exposes_the_key_from_the_secret_scope(target: str) -> None:
    bundle = resolve_target(target)
    env = bundle["resources"]["jobs"][CLUSTER_JOB]["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    assert (
        env["AZURE_OPENAI_API_KEY"]
        == f"{{{{secrets/{bundle['_variables']['secret_scope']}/azure-openai-key}}}}"
    )


def test_schedule_paused_in_dev_and_one_job_running_in_prod() -> None:
    schedules = {
        (target, job): resolve_target(target)["resources"]["jobs"][job]["schedule"]
        for target in TARGETS
        for job in JOBS
    }
    assert {k: s["pause_status"] for k, s in schedules.items()} == {
        ("dev", CLUSTER_JOB): "PAUSED",
        ("dev", SERVERLESS_JOB): "PAUSED",
        ("prod", CLUSTER_JOB): "UNPAUSED",
        ("prod", SERVERLESS_JOB): "PAUSED",
    }
    for schedule in schedules.values():
        fields = schedule["quartz_cron_expression"].split()
        assert len(fields) in (6, 7), fields  # sec min hour day-of-month month day-of-week [year]
        assert (fields[3] == "?") != (fields[5] == "?"), "Quartz needs exactly one '?' day field"
        assert schedule["timezone_id"]


@pytest.mark.parametrize("target", TARGETS)
def test_no_target_schedules_both_jobs_on_the_same_tables(target: str) -> None:
    root, _ = load_bundle()
    statuses = {
        job: resolve_target(target)["resources"]["jobs"][job]["schedule"]["pause_status"] for job in JOBS
    }
    assert list(statuses.values()).count("UNPAUSED") <= 1, statuses
    # Each job's schedule follows its own variable, so a deploy can swap which one runs.
    own_variable = {CLUSTER_JOB: "schedule_pause_status", SERVERLESS_JOB: "serverless_schedule_pause_status"}
    for job, var in own_variable.items():
        assert root["resources"]["jobs"][job]["schedule"]["pause_status"] == f"${{var.{var}}}"


def test_prod_overrides_merge_into_the_job_cluster() -> None:
    dev_cluster = resolve_target("dev")["resources"]["jobs"][CLUSTER_JOB]["job_clusters"][0]["new_cluster"]
    prod_cluster = resolve_target("prod")["resources"]["jobs"][CLUSTER_JOB]["job_clusters"][0]["new_cluster"]
    assert prod_cluster["autoscale"]["max_workers"] > dev_cluster["autoscale"]["max_workers"]
    # The override touched only autoscale: the rest of the cluster spec is inherited.
    for key in ("spark_version", "node_type_id", "data_security_mode", "spark_env_vars"):
        assert prod_cluster[key] == dev_cluster[key]
    assert re.fullmatch(r"\d+\.\d+\.x-scala2\.1[23]", prod_cluster["spark_version"])


# --- task command lines → settings ------------------------------------------------------


@pytest.mark.parametrize("job_name", JOBS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("task_key", list(TASK_COMMANDS))
def test_task_parameters_parse_and_validate(target: str, task_key: str, job_name: str) -> None:
    args, settings = settings_for_task(target, task_key, job_name)
    variables = resolve_target(target)["_variables"]
    assert args.command == TASK_COMMANDS[task_key]
    catalog, schema = variables["catalog"], variables["schema"]
    volume = f"/Volumes/{catalog}/{schema}/{variables['volume']}"
    assert settings.storage.catalog == catalog
    assert settings.storage.schema_ == schema
    assert settings.storage.uses_catalog
    # Unity Catalog tables by three-part name, managed (no path of Lakechain's choosing).
    tables = Tables(None, settings)  # type: ignore[arg-type]  # naming needs no session
    assert tables.full_name("results") == f"{catalog}.{schema}.results"
    assert tables.location("results") is None
    assert settings.storage.volume == volume
    assert settings.storage.files_root == volume
    assert settings.corpus.path == f"{volume}/corpus"
    assert settings.tasks.path == f"{volume}/tasks.jsonl"
    # The session is the one Databricks gives the task: nothing asks for another one.
    assert settings.spark.remote is None and settings.spark.conf == {}
    assert getattr(args, "retry_failed", False) is (task_key == "run_tasks")


def test_dev_and_prod_write_to_different_schemas() -> None:
    _, dev = settings_for_task("dev", "embed")
    _, prod = settings_for_task("prod", "embed")
    assert dev.storage.schema_ != prod.storage.schema_
    assert dev.storage.volume != prod.storage.volume


@pytest.mark.parametrize("job_name", JOBS)
def test_run_time_parameters_reach_the_settings(job_name: str) -> None:
    _, settings = settings_for_task(
        "dev", "run_tasks", job_name, overrides="tasks.max_concurrency=16", tasks_path="main.sales.questions"
    )
    assert settings.tasks.max_concurrency == 16
    assert settings.tasks.path == "main.sales.questions"


@pytest.mark.parametrize("job_name", JOBS)
def test_a_bad_run_time_override_is_refused(job_name: str) -> None:
    with pytest.raises(ConfigError, match="tasks.max_concurrency"):
        settings_for_task("dev", "index", job_name, overrides="tasks.max_concurrency=0")
    with pytest.raises(ConfigError, match="tasks.max_concurency"):
        settings_for_task("dev", "index", job_name, overrides="tasks.max_concurency=4")
    with pytest.raises(ConfigError, match="storage.schema"):
        settings_for_task("dev", "index", job_name, schema="lake-chain")  # not an identifier


# --- conf/databricks.yaml and its secrets -----------------------------------------------

ENDPOINTS = ("embedding", "chat", "images")


def test_databricks_conf_validates_with_secret_references() -> None:
    calls: list[tuple[str, str]] = []
    settings = load_settings(CONF, secret_getter=fake_secrets(calls))
    assert calls and set(calls) == {("lakechain", "azure-openai-key")}
    s = settings.storage
    assert s.uses_catalog
    assert Tables(None, settings).full_name("chunks") == f"{s.catalog}.{s.schema_}.chunks"  # type: ignore[arg-type]
    assert s.volume == f"/Volumes/{s.catalog}/{s.schema_}/files"
    assert s.root.startswith("/Volumes/")
    assert settings.corpus.path.startswith(s.volume + "/")
    assert settings.tasks.path.startswith(s.volume + "/")
    deployments = set()
    for section in ENDPOINTS:
        cfg = getattr(settings, section)
        assert cfg.provider == "azure_openai"
        assert cfg.base_url and cfg.base_url.startswith("https://")
        assert cfg.api_version and cfg.deployment
        assert cfg.api_key is not None and cfg.api_key.get_secret_value() == SECRET
        cfg.check_remote(section)  # raises when a provider lacks what it needs
        deployments.add(cfg.deployment)
    assert len(deployments) == 3  # chat, embeddings and images are different deployments


def test_databricks_conf_keeps_only_references_on_disk() -> None:
    raw = yaml.safe_load(CONF.read_text(encoding="utf-8"))
    for section in ENDPOINTS:
        assert re.fullmatch(r"\$\{secret:[^/}]+/[^}]+\}", raw[section]["api_key"]), section


def test_databricks_conf_leaves_the_session_to_databricks() -> None:
    """Serverless rejects most Spark properties and has no SparkContext: the file sets no
    Spark property, master or remote, and no key from the removed storage.delta switch."""
    raw = yaml.safe_load(CONF.read_text(encoding="utf-8"))
    assert "spark" not in raw
    assert "delta" not in raw["storage"]
    settings = load_settings(CONF, secret_getter=fake_secrets())
    assert settings.spark.remote is None and settings.spark.conf == {}


# --- the secret reader the config uses on Databricks ------------------------------------


class _FakeSecrets:
    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values
        self.calls: list[tuple[str, str]] = []

    def get(self, scope: str, key: str) -> str:
        self.calls.append((scope, key))
        if (scope, key) not in self.values:
            raise RuntimeError(f"Secret does not exist with scope: {scope} and key: {key}")
        return self.values[(scope, key)]


def _fake_sdk_runtime(monkeypatch: pytest.MonkeyPatch, secrets: _FakeSecrets) -> None:
    """``databricks.sdk.runtime`` as a Databricks runtime or serverless environment has it."""
    runtime = types.ModuleType("databricks.sdk.runtime")
    runtime.dbutils = types.SimpleNamespace(secrets=secrets)  # type: ignore[attr-defined]
    for name in ("databricks", "databricks.sdk"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "databricks.sdk.runtime", runtime)


def test_secret_references_resolve_through_the_runtime_dbutils(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = _FakeSecrets({("lakechain", "azure-openai-key"): SECRET})
    _fake_sdk_runtime(monkeypatch, secrets)
    settings = load_settings(CONF)  # the default secret reader, as the jobs run it
    for section in ENDPOINTS:
        assert getattr(settings, section).api_key.get_secret_value() == SECRET
    assert set(secrets.calls) == {("lakechain", "azure-openai-key")}
    _assert_hidden(settings, SECRET)


def test_an_unreadable_secret_names_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_sdk_runtime(monkeypatch, _FakeSecrets({}))
    with pytest.raises(ConfigError, match=r"\$\{secret:lakechain/azure-openai-key\}: cannot read") as err:
        load_settings(CONF)
    assert "READ" in str(err.value)


def test_secrets_outside_databricks_point_to_env_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "databricks.sdk.runtime", None)  # import fails
    with pytest.raises(ConfigError, match=r"\$\{secret:s/k\}: .*\$\{env:NAME\}"):
        databricks_secret("s", "k")


def _env_overrides(var: str) -> list[str]:
    return [f"{section}.api_key=${{env:{var}}}" for section in ENDPOINTS]


def test_env_reference_override_replaces_the_secret_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKECHAIN_TEST_AZURE_KEY", SECRET + "-env")

    def no_secrets(scope: str, key: str) -> str:
        raise AssertionError("the secret scope must not be read when every key is overridden")

    settings = load_settings(CONF, _env_overrides("LAKECHAIN_TEST_AZURE_KEY"), secret_getter=no_secrets)
    for section in ENDPOINTS:
        assert getattr(settings, section).api_key.get_secret_value() == SECRET + "-env"


def test_unset_env_reference_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKECHAIN_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="LAKECHAIN_TEST_UNSET_KEY"):
        load_settings(CONF, _env_overrides("LAKECHAIN_TEST_UNSET_KEY"), secret_getter=fake_secrets())


def _assert_hidden(settings: Settings, secret: str) -> None:
    dumped = settings.safe_dump()
    for text in (
        repr(settings),
        str(settings),
        f"{settings}",
        repr(dumped),
        json.dumps(dumped),
        settings.model_dump_json(),
        repr(settings.chat),
        str(settings.chat.api_key),
    ):
        assert secret not in text
    assert dumped["chat"]["api_key"] == "**********"


def test_secret_never_appears_in_reprs_dumps_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(CONF, secret_getter=fake_secrets())
    _assert_hidden(settings, SECRET)

    # The same through the CLI's own loading path, with the key in the environment.
    env_secret = SECRET + "-via-env"
    monkeypatch.setenv("LAKECHAIN_TEST_AZURE_KEY", env_secret)
    argv = ["run-tasks", "--config", str(CONF)]
    for item in _env_overrides("LAKECHAIN_TEST_AZURE_KEY"):
        argv += ["--set", item]
    cli_settings = settings_from_args(build_parser().parse_args(argv))
    assert cli_settings.images.api_key.get_secret_value() == env_secret
    _assert_hidden(cli_settings, env_secret)

    # A config error raised after the secret was resolved must not quote it either.
    with pytest.raises(ConfigError) as err:
        load_settings(CONF, ["chat.max_tokens=0", "embedding.timeout_s=abc"], secret_getter=fake_secrets())
    assert SECRET not in str(err.value)

    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert SECRET not in logged and env_secret not in logged


@pytest.mark.parametrize("section", ENDPOINTS)
def test_a_literal_key_is_refused(tmp_path: Path, section: str) -> None:
    literal = "sk-live-0123456789abcdef"
    raw = yaml.safe_load(CONF.read_text(encoding="utf-8"))
    raw[section]["api_key"] = literal
    path = tmp_path / "databricks.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{section}\.api_key: write secrets by reference") as err:
        load_settings(path, secret_getter=fake_secrets())
    assert literal not in str(err.value)

    with pytest.raises(ConfigError, match=rf"{section}\.api_key") as err:
        load_settings(CONF, [f"{section}.api_key={literal}"], secret_getter=fake_secrets())
    assert literal not in str(err.value)


@pytest.mark.parametrize(
    "override",
    ["chat.provider=${secret:lakechain/azure-openai-key}", "images.size=${env:LAKECHAIN_TEST_AZURE_KEY}"],
)
def test_a_reference_under_the_wrong_key_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, override: str
) -> None:
    monkeypatch.setenv("LAKECHAIN_TEST_AZURE_KEY", SECRET)
    with pytest.raises(ConfigError) as err:
        load_settings(CONF, [override], secret_getter=fake_secrets())
    key, ref = override.split("=", 1)
    assert key in str(err.value) and ref in str(err.value)  # names the key and the reference
    assert SECRET not in str(err.value)
