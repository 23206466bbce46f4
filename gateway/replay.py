"""Replaying a dead letter: its outbox row goes back to the queue, and the same document code is
sent again — so a replay can never create a second ERP document."""

from __future__ import annotations

from gateway.clock import Clock
from gateway.ports import DeadLetter, UnitOfWorkFactory


async def replay_dead_letter(letter_id: str, *, uow_factory: UnitOfWorkFactory, clock: Clock, actor: str) -> DeadLetter:
    """Requeue the delivery behind a dead letter.

    Raises:
        LookupError: no such dead letter.
        ValueError: it was replayed already.
    """
    now = clock.now()
    async with uow_factory() as uow:
        letter = await uow.dead_letters.get(letter_id)
        if letter is None:
            raise LookupError(letter_id)
        if letter.replayed_at is not None:
            raise ValueError(f"dead letter {letter_id} was replayed at {letter.replayed_at.isoformat()}")
        if not await uow.outbox.requeue(letter.outbox_id, now=now):
            raise ValueError(f"the delivery of dead letter {letter_id} is not dead any more")
        await uow.dead_letters.mark_replayed(letter_id, now=now)
        await uow.orders.set_state(letter.order_id, "accepted")
        await uow.orders.set_erp(letter.order_id, target=letter.target, document_no=None, status="pending")
        await uow.orders.add_timeline(letter.order_id, "erp.replayed", {"dead_letter_id": letter_id, "by": actor})
        await uow.audit.append(
            actor=actor,
            action="dead_letter.replayed",
            subject_type="order",
            subject_id=letter.order_id,
            data={"dead_letter_id": letter_id, "target": letter.target},
        )
        await uow.commit()
    return letter
