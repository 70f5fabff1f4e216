"""The reason logged for a worker start says what happened: a scale-from-zero start does not claim that a
job waited longer than the queue delay (it had waited 0.0 s)."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from tests.supervisor.world import World


async def test_scale_from_zero_then_queue_delay_reasons(tmp_path: Path) -> None:
    world = await World.create(tmp_path / "data")
    try:
        world.endpoint(workersMin=0, workersMax=3, scalerType="QUEUE_DELAY", scalerValue=1)
        world.submit(n=3, seconds=30)
        with capture_logs() as logs:
            await world.step()
            await world.step(1.5)
        reasons = [e["reason"] for e in logs if e["event"] == "worker wanted"]
        assert reasons[0] == "scale from zero: 3 job(s) queued and no worker"
        assert len(reasons) == 3 and all(
            r.startswith("QUEUE_DELAY: a job has waited ") and r.endswith("s > 1s") and "waited 0.0s" not in r
            for r in reasons[1:]
        ), reasons
    finally:
        await world.sup.stop()
        world.core.close()
