"""to_jsonable / write_json: configs and metric values become plain, stable JSON."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

import chz
import numpy as np

from cookbook.client.types import AdamParams
from cookbook.utils.jsonable import CLASS_KEY, to_jsonable, write_json


class Color(enum.Enum):
    RED = "red"


@chz.chz
class DatasetBuilder:
    path: str = "data.jsonl"
    batch_size: int = 4


@chz.chz
class TrainConfig:
    learning_rate: float = 1e-4
    dataset_builder: DatasetBuilder = chz.field(default_factory=DatasetBuilder)
    lr_schedule: str = "linear"
    tags: tuple[str, ...] = ("a", "b")


@dataclasses.dataclass
class Point:
    x: int
    where: Path


def preprocess(text: str) -> str:
    return text


class Opaque:
    pass


def test_chz_config_becomes_a_nested_dict_with_class_names() -> None:
    out = to_jsonable(TrainConfig())
    assert out[CLASS_KEY].endswith("test_jsonable.TrainConfig")
    assert out["learning_rate"] == 1e-4
    assert out["tags"] == ["a", "b"]
    assert out["dataset_builder"] == {
        CLASS_KEY: out["dataset_builder"][CLASS_KEY],
        "path": "data.jsonl",
        "batch_size": 4,
    }
    assert out["dataset_builder"][CLASS_KEY].endswith("DatasetBuilder")
    json.dumps(out)  # plain JSON


def test_dataclass_pydantic_enum_path_and_callables() -> None:
    out = to_jsonable(
        {
            "p": Point(1, Path("/tmp/x")),
            "adam": AdamParams(learning_rate=0.5),
            "color": Color.RED,
            "fn": preprocess,
            "cls": Opaque,
            3: {2, 1},
        }
    )
    assert out["p"]["x"] == 1 and out["p"]["where"] == "/tmp/x"
    assert out["adam"]["learning_rate"] == 0.5 and out["adam"][CLASS_KEY].endswith("AdamParams")
    assert out["color"] == "red"
    assert out["fn"].endswith("test_jsonable.preprocess")
    assert out["cls"].endswith("test_jsonable.Opaque")
    assert out["3"] == [1, 2]


def test_unknown_objects_use_repr_without_memory_address() -> None:
    text = to_jsonable(Opaque())
    assert "Opaque object" in text and "0x" not in text


def test_numpy_values_become_python_numbers() -> None:
    out = to_jsonable({"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "a": np.arange(3)})
    assert out == {"i": 3, "f": 0.5, "b": True, "a": [0, 1, 2]}
    assert type(out["i"]) is int and type(out["b"]) is bool


def test_torch_tensors_become_python_numbers() -> None:
    import torch

    assert to_jsonable({"loss": torch.tensor(1.5), "v": torch.tensor([1, 2])}) == {"loss": 1.5, "v": [1, 2]}


def test_write_json_replaces_the_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "config.json"
    write_json(target, {"a": 1})
    write_json(target, TrainConfig())
    assert json.loads(target.read_text())["learning_rate"] == 1e-4
    assert [p.name for p in target.parent.iterdir()] == ["config.json"]
