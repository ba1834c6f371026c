"""docs/fidelity.md is the specification of each recipe's pipeline: every value of its "here" column is the
value the named command composes (asserted here, row by row), so the page cannot drift from the configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from spt_lightning.config import compose_train

DOC = Path(__file__).resolve().parents[1] / "docs" / "fidelity.md"


def _tables() -> list[tuple[str, list[str], list[list[str]]]]:
    """``(heading, command overrides, rows)`` of every table headed ``## ... — `command```."""
    tables, heading, command = [], None, None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            found = re.search(r"— `([^`]+)`\s*$", line)
            heading, command = line[3:], (found.group(1).split() if found else None)
            if command is not None:
                tables.append((heading, command, []))
        elif command is not None and line.startswith("| ") and not line.startswith(("| setting", "| ---")):
            tables[-1][2].append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return tables


def _key(cell: str) -> str:
    return cell.strip("`").replace("\\.", "\0")


def _select(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):  # a part may hold escaped dots: recipe.grid.model\.optimizer\.lr
        if part.replace("\0", ".") not in node:
            return None  # an absent node: the page says null
        node = node[part.replace("\0", ".")]
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node


TABLES = _tables()


def test_the_page_has_a_table_per_lineage():
    assert len(TABLES) >= 6 and all(rows for _, _, rows in TABLES)
    assert {"SPT", "VPT", "VIPAMIN"} <= {heading.split(",")[0] for heading, _, _ in TABLES}


@pytest.mark.parametrize("heading, command, rows", TABLES, ids=[t[0].split(" — ")[0] for t in TABLES])
def test_every_value_the_page_lists_is_the_composed_one(heading, command, rows):
    cfg = compose_train(command)
    for setting, key, theirs, here, *_ in rows:
        assert key.startswith("`") and here.startswith("`"), f"{heading}: row {setting!r} needs a key and a value"
        expected = yaml.safe_load(here.strip("`"))
        assert _select(cfg, _key(key)) == expected, f"{heading}: {setting} ({key})"
        assert re.search(r"L\d+|README|\.yaml|\.sh|\.py", theirs), f"{heading}: {setting} cites no file and line"
