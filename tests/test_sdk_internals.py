"""The private Temporal SDK names reportflow relies on still exist, in the same shape.

`reportflow/core/sdk_internals.py` names them for the workflow runner's
annotations; an SDK upgrade that moves or reshapes them must fail here first.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

import temporalio.worker

from reportflow.core.sdk_internals import PRIVATE_NAMES
from reportflow.core.workflow_runner import ContextFreeRunner, _ContextFreeInstance

ROOT = Path(__file__).resolve().parent.parent


def _private(name: str) -> object:
    module, attr = PRIVATE_NAMES[name]
    return getattr(importlib.import_module(module), attr)


def test_temporalio_is_pinned_exactly_and_installed_at_the_pin() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if d.replace(" ", "").startswith("temporalio")]
    assert len(pins) == 1 and pins[0].replace(" ", "").startswith("temporalio=="), pins
    pinned = pins[0].replace(" ", "").split("==", 1)[1].split(";")[0].split("[")[0]
    assert version("temporalio") == pinned


def test_command_info_is_a_dataclass_with_its_fields() -> None:
    info = _private("CommandInfo")
    assert dataclasses.is_dataclass(info)
    assert [f.name for f in dataclasses.fields(info)] == ["command_type", "command_seq"]


def test_workflow_definition_has_what_the_runner_passes_on() -> None:
    defn = _private("WorkflowDefinition")
    assert inspect.isclass(defn)
    assert callable(getattr(defn, "must_from_run_fn", None))


def test_the_runner_interface_still_uses_them() -> None:
    def annotation(cls: type, method: str, param: str) -> str:
        return str(inspect.signature(getattr(cls, method)).parameters[param].annotation)

    assert "_Definition" in annotation(temporalio.worker.WorkflowRunner, "prepare_workflow", "defn")
    for method in ("get_serialization_context", "get_external_store_context"):
        assert "CommandInfo" in annotation(
            temporalio.worker.WorkflowInstance, method, "command_info"
        )


def test_the_runner_implements_every_abstract_method() -> None:
    assert not inspect.isabstract(ContextFreeRunner)
    assert not inspect.isabstract(_ContextFreeInstance)
    runner_methods = set(temporalio.worker.WorkflowRunner.__abstractmethods__)
    instance_methods = set(temporalio.worker.WorkflowInstance.__abstractmethods__)
    assert runner_methods <= set(vars(ContextFreeRunner))
    assert instance_methods <= set(vars(_ContextFreeInstance))
