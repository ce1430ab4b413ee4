"""Where the outbox stands, as the database knows it: what reached the mail servers, what is in
flight, and what is stuck. Read by `outreach status` and by the metrics endpoint."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.clock import ensure_utc
from outreach.db.models import Message

LATE = dt.timedelta(minutes=10)  # due this long and not taken by a worker: the workers or the broker are not keeping up


@dataclass(frozen=True)
class Backlog:
    count: int
    oldest: dt.datetime | None  # since when the oldest of them has been due (or its lease ran out)

    def age(self, now: dt.datetime) -> float:
        return (now - self.oldest).total_seconds() if self.oldest is not None else 0.0


@dataclass(frozen=True)
class Outbox:
    at: dt.datetime  # when it was read
    by_status: dict[str, int]
    sent_last_hour: int  # accepted by the mail servers in the last hour
    due: Backlog  # planned and due: waiting for a worker
    claimed: int  # a worker is sending them now (within their lease)
    abandoned: Backlog  # left in `sending` by a worker whose lease ran out: recovery takes them
    late: Backlog  # due for longer than LATE

    @property
    def stuck(self) -> bool:
        return self.abandoned.count > 0 or self.late.count > 0


def _backlog(session: Session, *where: object) -> Backlog:
    count, oldest = session.execute(select(func.count(), func.min(Message.not_before)).where(Message.direction == "out", *where)).one()  # type: ignore[arg-type]
    return Backlog(int(count), ensure_utc(oldest) if oldest is not None else None)


def outbox(session: Session, now: dt.datetime) -> Outbox:
    statuses = {status: n for status, n in session.execute(select(Message.status, func.count()).where(Message.direction == "out").group_by(Message.status))}
    recent = session.scalar(select(func.count()).where(Message.direction == "out", Message.status == "sent", Message.sent_at > now - dt.timedelta(hours=1)))
    claimed = session.scalar(select(func.count()).where(Message.direction == "out", Message.status == "sending", Message.not_before > now))
    return Outbox(
        at=now,
        by_status=statuses,
        sent_last_hour=int(recent or 0),
        due=_backlog(session, Message.status == "planned", Message.not_before <= now),
        claimed=int(claimed or 0),
        abandoned=_backlog(session, Message.status == "sending", Message.not_before <= now),
        late=_backlog(session, Message.status == "planned", Message.not_before <= now - LATE),
    )
