"""The fast path reads the care-relations generation in the statement that reads the rows and
hands it with each resource, so the access policy checks its cached scope against the value as
of the read itself."""

from __future__ import annotations

import asyncio

from interop.store.context import WriteContext
from interop.store.generation import bump, current


def test_reads_carry_the_generation_read_with_them(services) -> None:  # type: ignore[no-untyped-def]
    store = services.store
    with store.write(WriteContext.service()) as tx:
        made = [
            tx.create({"resourceType": "Organization", "name": f"Org {i}"}, validate=False)
            for i in range(5)
        ]

    async def read_all() -> list[int | None]:
        found = await asyncio.gather(*(store.read_async("Organization", m.res_id) for m in made))
        return [f.relations_generation for f in found]

    before = asyncio.run(read_all())
    assert len(set(before)) == 1 and before[0] == current(store.fast)
    with services.engine.begin() as conn:
        bump(conn)  # a change of care relation, committed by another process
    after = asyncio.run(read_all())
    assert after == [before[0] + 1] * 5  # type: ignore[operator]
