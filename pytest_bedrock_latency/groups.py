"""Pooled regression gates: one verdict for a group of ``bedrock_regression`` tests.

A test joins group ``NAME`` with ``bedrock_regression(group="NAME")``, or by having no
group of its own when ``--bedrock-regression-group NAME`` is set. Its own bounds are
checked as usual; its requests go to the group. After every member has run, the group's
verdict is a test of its own, :class:`GroupItem` ``bedrock_regression[NAME]``: pairs are
drawn over the distinct requests of all members (spread evenly over them, in random
order) and decided once, with the group's budget. So the verdict is in the terminal, the
summary line, the exit status and JUnit XML like any test.

Without xdist the item is appended at the end of the collection. Under xdist the members
run on the workers; each member's report carries the group (:meth:`Group.to_json`) and
its completed calls (:func:`send_calls`) to the controller, which never collects: once
the workers have finished, it rebuilds the groups (:func:`receive`) and runs their items
itself, against the same target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baseline_store import params_from_json, params_to_json
from .markers import RegressionGate, TestBounds, group_nodeid
from .measurement import Generation
from .run import BOUNDS_KEY, report_nodeid

if TYPE_CHECKING:
    from .regression import Replayable

GROUP_OF_KEY = pytest.StashKey[str]()
"""On a member test: the name of its group."""

GROUP_KEY = pytest.StashKey["Group"]()
"""On a group's own item: the group."""


@dataclass
class Group:
    """A pooled gate: the members' common arguments and the requests they made."""

    name: str
    gate: RegressionGate
    members: list[str]
    records: list[Replayable] = field(default_factory=list)

    @property
    def nodeid(self) -> str:
        return group_nodeid(self.name)

    def to_json(self) -> dict[str, Any]:
        """The group without its records, as a member's report carries it to the controller."""
        gate = {f.name: getattr(self.gate, f.name) for f in fields(RegressionGate)}
        return {"name": self.name, "gate": gate, "members": list(self.members)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Group:
        return cls(str(data["name"]), RegressionGate(**data["gate"]), list(data["members"]))


@dataclass(frozen=True)
class SentCall:
    """A member's completed call as it reached the xdist controller: what the gate replays."""

    model_id: str
    operation: str
    request: Mapping[str, Any]
    figures: Generation
    complete: bool = True  # only completed calls are sent

    def generation(self) -> Generation:
        return self.figures


def send_calls(records: Sequence[Replayable], candidate: str | None) -> list[dict[str, Any]]:
    """A member's completed calls to ``candidate`` (to any model when it is not known yet),
    as JSON-ready data; the answers' texts stay behind.

    Raises:
        TypeError: a request has no JSON form (a file object as the body), so cannot be sent.
    """
    return [
        {
            "model_id": record.model_id,
            "operation": record.operation,
            "request": params_to_json(record.request),
            "figures": record.generation().to_json(include_text=False),
        }
        for record in records
        if record.complete and (candidate is None or record.model_id == candidate)
    ]


def receive(groups: dict[str, Group], data: Mapping[str, Any]) -> Group:
    """Add a member's report data (its group and calls) to ``groups``; the member's group."""
    name = str(data["name"])
    group = groups.get(name)
    if group is None:
        group = groups[name] = Group.from_json(data)
    group.records.extend(
        SentCall(
            str(call["model_id"]),
            str(call["operation"]),
            params_from_json(call["request"]),
            Generation.from_json(call["figures"]),
        )
        for call in data.get("calls") or ()
    )
    return group


class GroupItem(pytest.Item):
    """The verdict of a pooled gate, run after its members (under xdist, in the controller
    once the workers have finished); the gate itself is drawn by the session when this
    item's call phase ends, like any test's gate."""

    def runtest(self) -> None:
        """Nothing to run: the verdict is checked after the call like a member's gate."""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # A line number all the same: pytest's Node.warn needs one (a gate's warnings).
        return self.path, 0, self.name


class GroupMismatch(Exception):
    """A group's test whose ``bedrock_regression`` arguments differ from the group's (a
    usage error, or in an xdist worker that test's failure)."""

    def __init__(self, item: pytest.Item, message: str) -> None:
        super().__init__(message)
        self.item = item


def _comparable(gate: RegressionGate) -> RegressionGate:
    return replace(gate, group=None)


def plan_groups(
    items: list[pytest.Item], default_group: str | None, bounds: dict[pytest.Item, TestBounds]
) -> list[Group]:
    """The session's groups, members in collection order; marks each member.

    Raises:
        GroupMismatch: members of one group disagree on tolerances, budget or policy.
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
            groups[name] = Group(name, _comparable(gate), [report_nodeid(item)])
            continue
        if _comparable(gate) != group.gate:
            differ = [
                f.name
                for f in fields(RegressionGate)
                if f.name != "group" and getattr(gate, f.name) != getattr(group.gate, f.name)
            ]
            raise GroupMismatch(
                item,
                f"bedrock_regression group {name!r}: {item.nodeid} and {group.members[0]} "
                f"disagree on {', '.join(differ)}; one gate decides for the whole group, so "
                "give its tests the same bedrock_regression arguments (or another group)",
            )
        group.members.append(report_nodeid(item))
    return list(groups.values())


def group_items(session: pytest.Session, groups: list[Group]) -> list[GroupItem]:
    """One item per group, carrying its gate, to run after every member."""
    out = []
    for group in groups:
        # The node id is the bare name (not "::NAME" under the session): it keys the
        # group's stored baselines and its JSON report entry.
        item = GroupItem.from_parent(session, name=group.nodeid, nodeid=group.nodeid)
        item.stash[GROUP_KEY] = group
        item.stash[BOUNDS_KEY] = TestBounds(regression=group.gate)
        out.append(item)
    return out
