import asyncio

from servicekit.turns import in_turns
from tests.unit.loop_turns import other_task_turns


async def test_slices_cover_every_value_in_order_with_the_index_of_their_first():
    seen = [(start, list(part)) async for start, part in in_turns(list(range(7)), size=3)]
    assert seen == [(0, [0, 1, 2]), (3, [3, 4, 5]), (6, [6])]


async def test_another_task_runs_between_two_slices_and_not_before_the_first():
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async def walk() -> None:
        async for start, _ in in_turns(list(range(6)), size=2):
            order.append(f"slice {start}")

    walker = asyncio.ensure_future(walk())
    waiting = asyncio.ensure_future(other())
    await walker
    await waiting
    # walk runs first (scheduled first), yields after slice 0: the other task runs there.
    assert order == ["slice 0", "other", "slice 2", "slice 4"]


async def test_a_request_of_one_slice_gives_no_turn():
    async with other_task_turns() as turns:
        async for _ in in_turns(list(range(5)), size=10):
            pass
    assert turns[0] == 0
