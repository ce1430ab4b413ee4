"""The chaos test's count: a repeat is excused only when a SIGKILL followed its first 250 at once."""

from __future__ import annotations

from tests.chaos import OutRow, tally
from tests.servers import Received

LEAD = "ana@lead.example"
STEPS = ("intro", "follow-up")


def _mail(message_id: str) -> Received:
    return Received("me@us.example", [LEAD], f"Message-ID: <{message_id}>\r\nSubject: hi\r\n\r\nhello\r\n".encode())


def _rows() -> dict[str, OutRow]:
    def row(step: str) -> OutRow:
        return OutRow(step=step, recipient=LEAD, kind="sequence", status="sent", handed=False, attempts=1, not_before=None, error="")

    return {"a@us.example": row("intro"), "b@us.example": row("follow-up")}


def test_a_repeat_right_after_a_kill_is_the_gap_and_any_other_is_a_duplicate() -> None:
    accepted = [(100.0, _mail("a@us.example")), (160.0, _mail("a@us.example")), (190.0, _mail("b@us.example"))]
    near = tally(accepted, _rows(), [LEAD], STEPS, {}, 10.0, kills=[100.05], window=0.25)
    assert near.clean and len(near.in_window) == 1 and near.duplicates == []
    far = tally(accepted, _rows(), [LEAD], STEPS, {}, 10.0, kills=[101.0], window=0.25)
    assert not far.clean and far.in_window == [] and len(far.duplicates) == 1
    assert far.duplicates[0].startswith(f"{LEAD}: ") and far.duplicates[0].endswith("the next SIGKILL came 1000 ms after its first 250")
    before = tally(accepted, _rows(), [LEAD], STEPS, {}, 10.0, kills=[99.9], window=0.25)  # a kill before the 250 explains nothing
    assert len(before.duplicates) == 1
