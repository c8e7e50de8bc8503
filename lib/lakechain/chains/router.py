"""Multi-task router: one input may ask for a QA answer, an image, or both, run in parallel.

Input (the tutorial's multi-task shape)::

    {"qa": {"question": "..."}, "image_generation": {"prompt": "...", "size": "512x512"?},
     "illustrate": true?}

Either task key or both; ``"illustrate": true`` turns the QA branch into the illustrated
answer chain. Output has the same task keys: ``{"qa": {...}, "image_generation": {...}}``.
Present branches run concurrently (``RunnableParallel``; ``max_concurrency`` in the config
is honoured). Malformed input raises :class:`RouterInputError` naming every problem.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnableParallel

from lakechain.chains.errors import classify

TASK_KEYS = ("qa", "image_generation")
OPTION_KEYS = ("illustrate",)
FIELDS = {"qa": {"question": True}, "image_generation": {"prompt": True, "size": False}}


class RouterInputError(ValueError):
    """The multi-task input is malformed; the message names the offending keys."""


def _task_input(tasks: dict[str, Any], key: str) -> Runnable[Any, Any]:
    """The branch for ``key`` gets its own task's input, not the whole multi-task object.

    A function, not a lambda in the caller's loop: the lambda binds this call's ``key``.
    """
    return RunnableLambda(lambda _x: tasks[key])


def validate_tasks(inputs: Any) -> dict[str, Any]:
    """Normalise and check a multi-task input; raises :class:`RouterInputError` listing all problems."""
    if not isinstance(inputs, dict):
        raise RouterInputError(
            f"multi-task input must be an object with keys {', '.join(TASK_KEYS)}; "
            f"got {type(inputs).__name__}"
        )
    problems: list[str] = []
    unknown = sorted(str(k) for k in inputs if k not in TASK_KEYS + OPTION_KEYS)
    if unknown:
        problems.append(f"unknown keys {unknown} (allowed: {', '.join(TASK_KEYS + OPTION_KEYS)})")
    present = [k for k in TASK_KEYS if inputs.get(k) is not None]
    if not present and not unknown:
        problems.append(f"no task given: expected at least one of {', '.join(TASK_KEYS)}")
    tasks: dict[str, dict[str, Any]] = {}
    for key in present:
        value = inputs[key]
        main = next(f for f, required in FIELDS[key].items() if required)
        if isinstance(value, str):
            value = {main: value}
        if not isinstance(value, dict):
            problems.append(f"{key}: must be an object like {{'{main}': '...'}}, got {type(value).__name__}")
            continue
        extra = sorted(str(k) for k in value if k not in FIELDS[key])
        if extra:
            problems.append(f"{key}: unknown keys {extra} (allowed: {', '.join(FIELDS[key])})")
        text = value.get(main)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{key}.{main}: required non-empty string, got {text!r:.80}")
        tasks[key] = {k: v for k, v in value.items() if k in FIELDS[key]}
    illustrate = inputs.get("illustrate", False)
    if not isinstance(illustrate, bool):
        problems.append(f"illustrate: must be true or false, got {illustrate!r:.40}")
    elif illustrate and "qa" not in present:
        problems.append("illustrate: needs a 'qa' task to illustrate")
    if problems:
        raise RouterInputError("invalid multi-task input: " + "; ".join(problems))
    return {"tasks": tasks, "illustrate": bool(illustrate)}


def error_payload(exc: BaseException) -> dict[str, Any]:
    info = classify(exc)
    return {
        "type": type(exc).__name__,
        "kind": info.kind,
        "retryable": info.retryable,
        "status": info.status,
        "message": str(exc),
    }


def _guarded(branch: Runnable[Any, dict]) -> Runnable[Any, dict]:
    def _run(inputs: Any, config: RunnableConfig) -> dict[str, Any]:
        try:
            return branch.invoke(inputs, config)
        except Exception as exc:  # reported per branch by design
            return {"error": error_payload(exc)}

    return RunnableLambda(_run)


def multi_task_router(
    qa: Runnable[Any, dict],
    image: Runnable[Any, dict],
    illustrated: Runnable[Any, dict] | None = None,
    *,
    capture_errors: bool = False,
) -> Runnable[dict, dict]:
    """Route a multi-task input to its branches, running them in parallel.

    With ``capture_errors=True`` a failing branch yields ``{"error": {type, kind,
    retryable, status, message}}`` and the other branch's result is kept; by default the
    first failure is raised.
    """
    wrap = _guarded if capture_errors else (lambda r: r)
    branches = {"qa": wrap(qa), "image_generation": wrap(image)}
    illustrated_branch = wrap(illustrated) if illustrated is not None else None

    def _route(inputs: Any, config: RunnableConfig) -> dict[str, Any]:
        checked = validate_tasks(inputs)
        steps: dict[str, Runnable[Any, dict]] = {}
        for key in checked["tasks"]:
            steps[key] = branches[key]
        if checked["illustrate"]:
            if illustrated_branch is None:
                raise RouterInputError(
                    "illustrate: this router was built without an illustrated-answer chain"
                )
            steps["qa"] = illustrated_branch
        per_branch = {key: (_task_input(checked["tasks"], key) | step) for key, step in steps.items()}
        return RunnableParallel(per_branch).invoke(inputs, config)

    return RunnableLambda(_route, name="lakechain_router")
