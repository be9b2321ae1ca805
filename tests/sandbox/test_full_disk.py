"""The sandbox's own database on a full disk (a real tmpfs): a 503 without the MX envelope,
which a client retries (the hub's dispatcher does), instead of a 500 ``MXUnexpectedException``
that made the hub's event dead; a line a second in its log rather than a traceback per call;
and it captures again, with every earlier lead, once there is space."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import structlog.testing

from tests.sandbox.helpers import Lsq
from tests.support.disks import resize, small_disk


def test_a_full_disk_is_a_503_without_envelope_then_captures_again(
    tmp_path: Path, sandbox_factory: Callable[..., Lsq]
) -> None:
    with small_disk(tmp_path / "disk", "600k") as disk:
        lsq = sandbox_factory(db_path=str(disk / "sandbox.db"))
        answers: Counter[int] = Counter()
        stored: list[str] = []
        refusals_began: float | None = None
        with structlog.testing.capture_logs() as logs:
            for n in range(3000):
                email = f"lead{n}@example.com"
                answer = lsq.capture(("EmailAddress", email), ("FirstName", "F" * 200))
                answers[answer.status_code] += 1
                if answer.status_code == 200:
                    stored.append(email)
                else:
                    refusals_began = refusals_began or time.monotonic()
                    assert answer.status_code == 503, answer.text
                    assert "the sandbox's database cannot be written" in answer.text
                    assert "disk is full" in answer.text
                    assert not answer.text.startswith("{")  # no MX envelope: not permanent
                if answers[503] == 200:
                    break
        assert refusals_began is not None
        refusals_took = time.monotonic() - refusals_began
        assert answers[503] == 200 and len(stored) >= 5, answers
        lines = [line for line in logs if line["event"] == "sandbox_storage_failed"]
        # At most a line a second, however long the 200 refusals took (well under 10 s on an
        # idle machine; 18 lines' worth under a load average of 20, which a fixed "at most
        # 10" failed): one at the first refusal, one per second since.
        assert 1 <= len(lines) <= refusals_took + 2, (len(lines), refusals_took)
        assert not [line for line in logs if line["event"] == "sandbox_request_failed"]
        resize(disk, "16m")
        message = lsq.ok(("EmailAddress", "after@example.com"))
        assert message["IsCreated"] is True
        emails = {lead["EmailAddress"] for lead in lsq.leads()}
        assert emails == {*stored, "after@example.com"}
