"""Pooled regression gates: one verdict for a group of ``bedrock_regression`` tests.

A test joins group ``NAME`` with ``bedrock_regression(group="NAME")``, or by having no
group of its own when ``--bedrock-regression-group NAME`` is set. Its own bounds are
checked as usual; its requests go to the group. After every member has run, the group's
verdict is a test of its own, :class:`GroupItem` ``bedrock_regression[NAME]``, appended
at the end of the collection: pairs are drawn over the distinct requests of all members
(spread evenly over them, in random order) and decided once, with the group's budget.
So the verdict is in the terminal, the summary line, the exit status and JUnit XML like
any test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .markers import RegressionGate, TestBounds

if TYPE_CHECKING:
    from .measurement import CallRecord

GROUP_OF_KEY = pytest.StashKey[str]()
"""On a member test: the name of its group."""

GROUP_KEY = pytest.StashKey["Group"]()
"""On a group's own item: the group."""


def group_nodeid(name: str) -> str:
    """The node id of a group's verdict (also its key in stored baselines)."""
    return f"bedrock_regression[{name}]"


@dataclass
class Group:
    """A pooled gate: the members' common arguments and the requests they made."""

    name: str
    gate: RegressionGate
    members: list[str]
    records: list[CallRecord] = field(default_factory=list)

    @property
    def nodeid(self) -> str:
        return group_nodeid(self.name)


class GroupItem(pytest.Item):
    """The verdict of a pooled gate, run after its members (the gate itself is drawn by the
    session when this item's call phase ends, like any test's gate)."""

    def runtest(self) -> None:
        """Nothing to run: the verdict is checked after the call like a member's gate."""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


def _comparable(gate: RegressionGate) -> RegressionGate:
    return replace(gate, group=None)


def plan_groups(
    items: list[pytest.Item], default_group: str | None, bounds: dict[pytest.Item, TestBounds]
) -> list[Group]:
    """The session's groups, members in collection order; marks each member.

    Raises:
        pytest.UsageError: members of one group disagree on tolerances, budget or policy.
    """
    groups: dict[str, Group] = {}
    for item in items:
        gate = bounds[item].regression if item in bounds else None
        if gate is None:
            continue
        name = gate.group or default_group
        if name is None:
            continue
        item.stash[GROUP_OF_KEY] = name
        group = groups.get(name)
        if group is None:
            groups[name] = Group(name, _comparable(gate), [item.nodeid])
            continue
        if _comparable(gate) != group.gate:
            differ = [
                f.name
                for f in fields(RegressionGate)
                if f.name != "group" and getattr(gate, f.name) != getattr(group.gate, f.name)
            ]
            raise pytest.UsageError(
                f"bedrock_regression group {name!r}: {item.nodeid} and {group.members[0]} "
                f"disagree on {', '.join(differ)}; one gate decides for the whole group, so "
                "give its tests the same bedrock_regression arguments (or another group)"
            )
        group.members.append(item.nodeid)
    return list(groups.values())


def group_items(session: pytest.Session, groups: list[Group]) -> list[GroupItem]:
    """One item per group, carrying its gate, to run after every member."""
    from .run import BOUNDS_KEY

    out = []
    for group in groups:
        item = GroupItem.from_parent(session, name=group.nodeid)
        item.stash[GROUP_KEY] = group
        item.stash[BOUNDS_KEY] = TestBounds(regression=group.gate)
        out.append(item)
    return out
